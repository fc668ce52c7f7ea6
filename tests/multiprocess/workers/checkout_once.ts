// Tries to check out one file as one user; prints "won" or "lost <holder>".
// Usage: checkout_once.ts REPO REGISTRY NAME USER
import { AlreadyCheckedOutError, FileService } from "../../../mod.ts";

const [repo, registry, name, user] = Deno.args;
const files = new FileService(repo, registry, { durable: false });
try {
  await files.checkout(name, user, `edit by ${user}`);
  console.log("won");
} catch (error) {
  if (!(error instanceof AlreadyCheckedOutError)) throw error;
  console.log(`lost ${error.holder.user}`);
}
