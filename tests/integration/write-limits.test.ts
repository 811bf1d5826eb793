// The compiled binary with default flags: a write too large for one log record gets an error reply
// that names the limit, and the server keeps serving everyone (it used to exit in the batch flush).
// That a SET of exactly --proto-max-bulk-len fits one record is checked in tests/node/write-limits.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startKv, type KvProcess } from "../helpers/server.ts";
import { RECORD_PAYLOAD_BYTES_MAX } from "../../src/storage/index.ts";
import { COMMAND_ENTRY_OVERHEAD_BYTES } from "../../src/node/kv-payload.ts";

const MB = 1024 * 1024;

/** One connection that writes whole buffers (queued until the socket drains) and collects replies. */
async function connect(port: number) {
  let got = "";
  const queue: Buffer[] = [];
  const pump = (s: { write(b: Buffer): number }) => {
    while (queue.length > 0) {
      const head = queue[0]!;
      const n = s.write(head);
      if (n < head.length) {
        if (n > 0) queue[0] = head.subarray(n);
        return;
      }
      queue.shift();
    }
  };
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_s, d) => void (got += d.toString("latin1")),
      drain: (s) => pump(s),
    },
  });
  return {
    send(b: Buffer | string) {
      queue.push(typeof b === "string" ? Buffer.from(b, "latin1") : b);
      if (queue.length === 1) pump(socket);
    },
    async waitFor(pred: (s: string) => boolean, ms: number): Promise<string> {
      const deadline = Date.now() + ms;
      while (!pred(got) && Date.now() < deadline) await Bun.sleep(20);
      return got;
    },
    close: () => socket.terminate(),
  };
}

/** `*n` header and `$len` headers around the given arguments; big ones are passed as lengths of 'x'. */
function command(args: (string | number)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    if (typeof a === "string") parts.push(Buffer.from(`$${a.length}\r\n${a}\r\n`));
    else parts.push(Buffer.from(`$${a}\r\n`), Buffer.alloc(a, 0x78), Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

describe("writes at and past the log's record limit (default flags)", () => {
  let kv: KvProcess;
  beforeAll(async () => {
    kv = await startKv();
  });
  afterAll(async () => {
    await kv?.stop();
  });

  test("MSET a <300 MB> b <300 MB> gets an error naming the limit; the server and other clients carry on", async () => {
    const big = await connect(kv.port);
    const other = await connect(kv.port);
    big.send(Buffer.concat([Buffer.from("SET first 1\r\n"), command(["MSET", "a", 300 * MB, "b", 300 * MB]), Buffer.from("GET first\r\nEXISTS a b\r\n")]));
    // Another client writes while the big command arrives and after it is refused.
    for (let i = 0; i < 20; i++) other.send(`SET o${i} ${i}\r\n`);
    // The size is the log entry's: the RESP-encoded command (600 MB + 56 bytes) and the entry's header.
    const want = `+OK\r\n-ERR write not accepted: the command is ${600 * MB + 56 + COMMAND_ENTRY_OVERHEAD_BYTES} bytes as a log entry, past the log's record limit of ${RECORD_PAYLOAD_BYTES_MAX} bytes (513 MiB) for one write\r\n$1\r\n1\r\n:0\r\n`;
    expect(await big.waitFor((s) => s.length >= want.length, 30_000)).toBe(want);
    expect(await other.waitFor((s) => s.length >= 20 * 5, 10_000)).toBe("+OK\r\n".repeat(20));
    other.send("MGET o0 o19\r\nDBSIZE\r\n");
    expect(await other.waitFor((s) => s.length > 20 * 5 + 20, 10_000)).toBe("+OK\r\n".repeat(20) + "*2\r\n$1\r\n0\r\n$2\r\n19\r\n:21\r\n");
    big.close();
    other.close();
    expect(kv.proc.exitCode).toBeNull();
  }, 60_000);
});
