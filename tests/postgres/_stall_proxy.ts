// A TCP forwarder on 127.0.0.1 in front of a test cluster that can be told
// to stop forwarding while it keeps every socket open: a stalled link
// (packets held, connection alive), as a partition or a hung middlebox
// leaves it, without touching the machine's network.

/** A stallable TCP forwarder to `127.0.0.1:targetPort`. */
export class StallProxy {
  readonly port: number;
  #listener: Deno.TcpListener;
  #conns = new Set<Deno.Conn>();
  #pumps: Promise<void>[] = [];
  #flowing: Promise<void> = Promise.resolve();
  #resume: () => void = () => {};
  #accepting: Promise<void>;

  private constructor(listener: Deno.TcpListener, targetPort: number) {
    this.#listener = listener;
    this.port = listener.addr.port;
    this.#accepting = this.#accept(targetPort);
  }

  /** Listens on a free port of 127.0.0.1. */
  static start(targetPort: number): StallProxy {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return new StallProxy(listener, targetPort);
  }

  /** A `postgres://` URL through the proxy. */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** Stops forwarding in both directions; sockets stay open. */
  stall(): void {
    this.#flowing = new Promise((resolve) => this.#resume = resolve);
  }

  /** Forwards again what was held, and what comes next. */
  resume(): void {
    this.#resume();
    this.#flowing = Promise.resolve();
  }

  /** Closes the listener and every connection. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    this.#conns.clear();
    this.resume();
    await this.#accepting;
    await Promise.all(this.#pumps);
  }

  async #accept(targetPort: number): Promise<void> {
    try {
      for await (const client of this.#listener) {
        // New connections are accepted while stalled (the kernel would
        // too); their bytes are held like any others.
        const server = await Deno.connect({
          hostname: "127.0.0.1",
          port: targetPort,
        });
        this.#conns.add(client);
        this.#conns.add(server);
        this.#pumps.push(
          this.#pump(client, server),
          this.#pump(server, client),
        );
      }
    } catch { /* the listener was closed */ }
  }

  async #pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        // An end is held like data.
        await this.#flowing;
        if (n === null) break;
        let written = 0;
        while (written < n) {
          written += await to.write(buffer.subarray(written, n));
        }
      }
    } catch { /* a side was closed */ }
    for (const conn of [from, to]) {
      if (!this.#conns.delete(conn)) continue;
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }
}
