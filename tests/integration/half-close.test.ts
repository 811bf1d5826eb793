// A client that shuts its sending side after its commands (`nc -N`, shutdown(SHUT_WR)) still gets
// every reply it is owed, writes waiting for their fsync included, and then the server closes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import { startKv, type KvProcess } from "../helpers/server.ts";
import { encodeCommand } from "../../src/resp/request-parser.ts";

/** Sends `wire`, half-closes, and collects every byte until the server closes (bounded by timeoutMs). */
function halfClose(port: number, wire: string | Buffer, timeoutMs = 10_000): Promise<{ got: string; serverEnded: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let serverEnded = false;
    const s = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => {
      s.write(wire);
      s.end(); // FIN: nothing more will be sent
    });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ got: Buffer.concat(chunks).toString("latin1"), serverEnded: false });
    }, timeoutMs);
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("end", () => (serverEnded = true));
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ got: Buffer.concat(chunks).toString("latin1"), serverEnded });
    });
  });
}

describe("half-closed clients", () => {
  let kv: KvProcess;
  beforeAll(async () => {
    kv = await startKv();
  });
  afterAll(async () => {
    await kv?.stop();
  });

  test("printf 'SET a b' | nc -N: the write is answered, then the server closes", async () => {
    const r = await halfClose(kv.port, "SET a b\r\n");
    expect(r).toEqual({ got: "+OK\r\n", serverEnded: true });
    expect(await halfClose(kv.port, "GET a\r\n")).toEqual({ got: "$1\r\nb\r\n", serverEnded: true });
  });

  test("a pipelined mix of writes and reads is answered in full and in order", async () => {
    let wire = "";
    let expected = "";
    for (let i = 0; i < 200; i++) {
      wire += `SET m${i} v${i}\r\nGET m${i}\r\nINCR cnt\r\nPING\r\n`;
      expected += `+OK\r\n$${`v${i}`.length}\r\nv${i}\r\n:${i + 1}\r\n+PONG\r\n`;
    }
    wire += encodeCommand(["MSET", "x", "1", "y", "2"]).toString("latin1") + "MGET x y\r\nDEL x y\r\n";
    expected += "+OK\r\n*2\r\n$1\r\n1\r\n$1\r\n2\r\n:2\r\n";
    const r = await halfClose(kv.port, wire);
    expect(r.got).toBe(expected);
    expect(r.serverEnded).toBe(true);
  });

  test("an unfinished command at the FIN is dropped; what came before it is answered", async () => {
    const r = await halfClose(kv.port, "SET u 1\r\nGET u\r\n*3\r\n$3\r\nSET\r\n$1\r\nu");
    expect(r).toEqual({ got: "+OK\r\n$1\r\n1\r\n", serverEnded: true });
  });
});

describe("half-closed clients with a slow disk", () => {
  let kv: KvProcess;
  beforeAll(async () => {
    // Each fsync takes 150 ms: the FIN arrives long before the writes are durable.
    kv = await startKv([], { env: { KV_TEST_FSYNC_DELAY_MS: "150" } });
  });
  afterAll(async () => {
    await kv?.stop();
  });

  test("writes still waiting for their fsync when the FIN arrives are answered", async () => {
    const wire = "SET s1 a\r\nGET s1\r\nSET s2 b\r\nAPPEND s2 c\r\nGET s2\r\n";
    const r = await halfClose(kv.port, wire);
    expect(r).toEqual({ got: "+OK\r\n$1\r\na\r\n+OK\r\n:2\r\n$2\r\nbc\r\n", serverEnded: true });
  });

  test("many half-closing clients at once each get their replies", async () => {
    const n = 20;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => halfClose(kv.port, `SET c${i} ${i}\r\nINCR c${i}\r\n`)));
    for (let i = 0; i < n; i++) expect(results[i]).toEqual({ got: `+OK\r\n:${i + 1}\r\n`, serverEnded: true });
  });
});

/**
 * Sends `wire` (commands, then input the server will not read), waits `readAfterMs` before reading
 * anything, then collects every byte until the connection ends or fails.
 */
function sendThenReadLate(port: number, wire: Buffer, readAfterMs: number): Promise<{ got: string; error: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error = "";
    const s = net.connect({ port, host: "127.0.0.1" }, () => {
      s.pause();
      s.write(wire, () => {});
      setTimeout(() => s.resume(), readAfterMs);
    });
    const timer = setTimeout(() => s.destroy(), 10_000);
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ got: Buffer.concat(chunks).toString("latin1"), error });
    });
  });
}

describe("input after QUIT or a protocol error", () => {
  let kv: KvProcess;
  beforeAll(async () => {
    kv = await startKv();
  });
  afterAll(async () => {
    await kv?.stop();
  });

  // Closing with input still unread makes the kernel send a reset, and the reset makes the
  // client's kernel drop the replies it had not read yet: kv sends its FIN and discards input
  // until the client closes (LINGER_MS at most).
  test("PING QUIT then 4 MB more: the client that reads late still gets +PONG and +OK", async () => {
    const wire = Buffer.concat([Buffer.from("PING\r\nQUIT\r\n"), Buffer.alloc(4 * 1024 * 1024, "x")]);
    const r = await sendThenReadLate(kv.port, wire, 300);
    expect(r).toEqual({ got: "+PONG\r\n+OK\r\n", error: "" });
  });

  test("PING then a protocol error then 4 MB more: +PONG and the error arrive", async () => {
    const wire = Buffer.concat([Buffer.from("PING\r\n*1\r\n$x\r\n"), Buffer.alloc(4 * 1024 * 1024, "y")]);
    const r = await sendThenReadLate(kv.port, wire, 300);
    expect(r.error).toBe("");
    expect(r.got).toStartWith("+PONG\r\n-ERR Protocol error");
  });
});
