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
