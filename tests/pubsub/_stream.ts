// A raw RESP connection that collects every frame it receives (replies and pushes alike), and a
// decoder of flat frames, for the pub/sub tests.
import type { Socket } from "bun";
import { encodeArgv, replyEnd } from "../helpers/resp-raw.ts";

/** A raw connection that collects every frame it receives, replies and pushes alike. */
export class Stream {
  private buf = "";
  frames: string[] = [];
  closed = false;
  private constructor(private readonly sock: Socket<undefined>) {}
  static async open(port: number): Promise<Stream> {
    let s: Stream | null = null;
    const sock = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_x, chunk) => s!.feed(Buffer.from(chunk).toString("latin1")),
        close: () => void (s !== null && (s.closed = true)),
      },
    });
    s = new Stream(sock);
    return s;
  }
  private feed(text: string): void {
    this.buf += text;
    let p = 0;
    for (;;) {
      const e = this.buf.length > p ? replyEnd(this.buf, p) : -1;
      if (e < 0) break;
      this.frames.push(this.buf.slice(p, e));
      p = e;
    }
    this.buf = this.buf.slice(p);
  }
  send(...cmds: string[][]): void {
    this.sock.write(Buffer.from(cmds.map(encodeArgv).join(""), "latin1"));
  }
  /** Waits until at least n frames arrived (bounded), then until none arrives for quietMs. */
  async settle(n: number, quietMs = 150, timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length < n && Date.now() < deadline) await Bun.sleep(5);
    let seen = -1;
    while (seen !== this.frames.length && Date.now() < deadline) {
      seen = this.frames.length;
      await Bun.sleep(quietMs);
    }
    const out = this.frames;
    this.frames = [];
    return out;
  }
  close(): void {
    this.sock.end();
  }

  /** Drops the connection at once (no FIN handshake wait). */
  kill(): void {
    this.sock.terminate();
  }
}


/** A flat frame (array or push of bulk strings, integers and nils; or one simple/error/int) as values. */
export function decodeFlat(frame: string): (string | number | null)[] | string {
  const t = frame[0];
  if (t === "+" || t === "-") return frame.slice(0, -2);
  const eol = frame.indexOf("\r\n");
  if (t === ":") return [Number(frame.slice(1, eol))];
  if (t !== "*" && t !== ">") throw new Error(`not flat: ${JSON.stringify(frame.slice(0, 40))}`);
  const n = Number(frame.slice(1, eol));
  const out: (string | number | null)[] = [];
  let p = eol + 2;
  for (let i = 0; i < n; i++) {
    const e = frame.indexOf("\r\n", p);
    const head = frame.slice(p + 1, e);
    if (frame[p] === ":") {
      out.push(Number(head));
      p = e + 2;
    } else if (frame[p] === "_" || (frame[p] === "$" && head === "-1")) {
      out.push(null);
      p = e + 2;
    } else {
      const len = Number(head);
      out.push(frame.slice(e + 2, e + 2 + len));
      p = e + 2 + len + 2;
    }
  }
  return out;
}
