// A pipelining RESP client that returns each reply's exact bytes (latin1), for tests that compare
// replies byte for byte (against a model, or against redis-server).
import type { Socket } from "bun";

/** RESP2 encoding of one command (byte strings as latin1). */
export function encodeArgv(argv: readonly string[]): string {
  let s = `*${argv.length}\r\n`;
  for (const a of argv) s += `$${a.length}\r\n${a}\r\n`;
  return s;
}

/** The end of the RESP2 or RESP3 reply starting at s[p], or -1 when it is not complete yet. */
export function replyEnd(s: string, p: number): number {
  const eol = s.indexOf("\r\n", p);
  if (eol < 0) return -1;
  const t = s[p];
  if (t === "+" || t === "-" || t === ":" || t === "_" || t === "#" || t === "," || t === "(") return eol + 2;
  let n = Number(s.slice(p + 1, eol));
  if (t === "$" || t === "!" || t === "=") {
    if (n < 0) return eol + 2;
    return s.length >= eol + 2 + n + 2 ? eol + 2 + n + 2 : -1;
  }
  if (t === "%" || t === "|") n *= 2;
  if (t === "*" || t === "~" || t === ">" || t === "%" || t === "|") {
    let q = eol + 2;
    for (let i = 0; i < n; i++) {
      q = replyEnd(s, q);
      if (q < 0) return -1;
    }
    return t === "|" ? replyEnd(s, q) : q; // an attribute precedes the reply it annotates
  }
  throw new Error(`not a RESP reply at ${p}: ${JSON.stringify(s.slice(p, p + 40))}`);
}

export class RawResp {
  private buf = "";
  private closed = false;
  private wake: (() => void) | null = null;

  private constructor(private socket: Socket<undefined> | null) {}

  /** The server closed the connection (or it failed). */
  get isClosed(): boolean {
    return this.closed;
  }

  static async connect(port: number): Promise<RawResp> {
    const c = new RawResp(null);
    c.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, chunk) => {
          c.buf += Buffer.from(chunk).toString("latin1");
          c.wake?.();
        },
        drain: () => c.wake?.(),
        close: () => {
          c.closed = true;
          c.wake?.();
        },
        error: () => {
          c.closed = true;
          c.wake?.();
        },
      },
    });
    return c;
  }

  private wait(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, timeoutMs);
      this.wake = () => {
        clearTimeout(t);
        this.wake = null;
        resolve();
      };
    });
  }

  /** Sends the commands pipelined and returns their replies' bytes, in order (bounded by timeoutMs). */
  async call(cmds: readonly (readonly string[])[], timeoutMs = 20_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    const wire = Buffer.from(cmds.map(encodeArgv).join(""), "latin1");
    let off = 0;
    const out: string[] = [];
    let p = 0;
    while (out.length < cmds.length) {
      if (off < wire.length) {
        const n = this.socket!.write(wire.subarray(off));
        if (n > 0) off += n;
      }
      for (;;) {
        if (out.length === cmds.length) break;
        const e = this.buf.length > p ? replyEnd(this.buf, p) : -1;
        if (e < 0) break;
        out.push(this.buf.slice(p, e));
        p = e;
      }
      if (out.length === cmds.length) break;
      if (this.closed) throw new Error(`connection closed after ${out.length} of ${cmds.length} replies`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${out.length} of ${cmds.length} replies`);
      await this.wait(Math.min(left, off < wire.length ? 5 : 100));
    }
    this.buf = this.buf.slice(p);
    return out;
  }

  /** Sends the commands pipelined without waiting for replies (as far as the socket takes them now). */
  send(cmds: readonly (readonly string[])[]): void {
    this.socket!.write(Buffer.from(cmds.map(encodeArgv).join(""), "latin1"));
  }

  /** The complete replies received so far and not yet returned. */
  received(): string[] {
    const out: string[] = [];
    let p = 0;
    for (;;) {
      const e = this.buf.length > p ? replyEnd(this.buf, p) : -1;
      if (e < 0) break;
      out.push(this.buf.slice(p, e));
      p = e;
    }
    this.buf = this.buf.slice(p);
    return out;
  }

  close(): void {
    this.socket?.end();
  }
}
