// Tries to check out one file as one user; prints "won" or "lost <holder>".
// Usage: checkout_once.ts REPO REGISTRY NAME USER
// With LOCKBOX_TEST_BACKEND=postgres, REGISTRY names a document on the
// server the PG* variables point at.
import { AlreadyCheckedOutError, FileService } from "../../../mod.ts";
import { testBackend } from "./_backend.ts";

const [repo, registry, name, user] = Deno.args;
await using backend = await testBackend();
// 20 of these start at once: on a loaded machine their turns can take longer
// than the default 30 s in all; what is tested is that exactly one wins.
const files = new FileService(repo, registry, {
  durable: false,
  lockTimeout: 300_000,
  backend: backend.backend,
});
try {
  await files.checkout(name, user, `edit by ${user}`);
  console.log("won");
} catch (error) {
  if (!(error instanceof AlreadyCheckedOutError)) throw error;
  console.log(`lost ${error.holder.user}`);
}
