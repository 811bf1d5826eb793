// Real Redis clients against the compiled binary: redis-cli (RESP2 and -3), ioredis 6 and
// node-redis 6 (both open with HELLO 3), with their default options.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { createClient } from "redis";
import { startKv, type KvProcess } from "../helpers/server.ts";

let kv: KvProcess;

beforeAll(async () => {
  kv = await startKv();
});

afterAll(async () => {
  await kv?.stop();
});

async function redisCli(args: string[], stdin?: string): Promise<{ out: string; code: number }> {
  const p = Bun.spawn(["redis-cli", "-h", "127.0.0.1", "-p", String(kv.port), ...args], {
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = await new Response(p.stdout).text();
  const code = await p.exited;
  return { out, code };
}

describe("redis-cli", () => {
  test("one-shot commands", async () => {
    expect(await redisCli(["set", "cli:foo", "bar"])).toEqual({ out: "OK\n", code: 0 });
    expect(await redisCli(["get", "cli:foo"])).toEqual({ out: "bar\n", code: 0 });
    expect(await redisCli(["incrby", "cli:n", "41"])).toEqual({ out: "41\n", code: 0 });
    expect(await redisCli(["--no-raw", "get", "cli:missing"])).toEqual({ out: "(nil)\n", code: 0 });
    expect((await redisCli(["--no-raw", "mget", "cli:foo", "cli:missing"])).out).toBe('1) "bar"\n2) (nil)\n');
    expect((await redisCli(["--no-raw", "nosuchcommand"])).out).toContain("(error) ERR unknown command 'nosuchcommand'");
  });

  test("RESP3 with -3, and commands from stdin", async () => {
    expect((await redisCli(["-3", "--no-raw", "get", "cli:missing"])).out).toBe("(nil)\n");
    expect((await redisCli(["-3", "--no-raw", "get", "cli:foo"])).out).toBe('"bar"\n');
    const piped = await redisCli([], "SET cli:piped 1\nINCR cli:piped\nGET cli:piped\n");
    expect(piped.out).toBe("OK\n2\n2\n");
  });

  test("--pipe mass insertion", async () => {
    let wire = "";
    for (let i = 0; i < 1000; i++) wire += `*3\r\n$3\r\nSET\r\n$${`pipe:${i}`.length}\r\npipe:${i}\r\n$1\r\nx\r\n`;
    const r = await redisCli(["--pipe"], wire);
    expect(r.code).toBe(0);
    expect(r.out).toContain("errors: 0, replies: 1000");
    expect((await redisCli(["exists", ...Array.from({ length: 1000 }, (_, i) => `pipe:${i}`)])).out).toBe("1000\n");
  });
});

describe("ioredis 6 (RESP3 by default)", () => {
  test("connects with its ready check and runs commands, pipelines and TTLs", async () => {
    const r = new Redis({ host: "127.0.0.1", port: kv.port, lazyConnect: true, maxRetriesPerRequest: 1 });
    await r.connect();
    try {
      expect(await r.set("io:foo", "bar", "EX", 100)).toBe("OK");
      expect(await r.get("io:foo")).toBe("bar");
      expect(await r.ttl("io:foo")).toBeGreaterThan(95);
      expect(await r.get("io:missing")).toBeNull();
      expect(await r.incr("io:n")).toBe(1);
      expect(await r.mset("io:a", "1", "io:b", "2")).toBe("OK");
      expect(await r.mget("io:a", "io:b", "io:c")).toEqual(["1", "2", null]);
      const bin = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      await r.set("io:bin", bin);
      expect((await r.getBuffer("io:bin"))!.equals(bin)).toBe(true);
      const res = await r.pipeline().set("io:p", "1").incr("io:p").get("io:p").exec();
      expect(res).toEqual([[null, "OK"], [null, 2], [null, "2"]]);
      await expect(r.call("nosuchcommand")).rejects.toThrow(/unknown command/);
      expect(await r.del("io:foo", "io:a", "io:nothing")).toBe(2);
      expect(await r.client("GETNAME")).toBeNull();
    } finally {
      r.disconnect();
    }
  });
});

describe("node-redis 6 (RESP3 by default)", () => {
  test("connects (HELLO 3, CLIENT SETINFO, MAINT_NOTIFICATIONS) and runs commands", async () => {
    const c = createClient({ socket: { host: "127.0.0.1", port: kv.port, reconnectStrategy: false } });
    c.on("error", () => {});
    await c.connect();
    try {
      expect(await c.set("nr:foo", "bar", { PX: 100000 })).toBe("OK");
      expect(await c.get("nr:foo")).toBe("bar");
      expect(await c.pTTL("nr:foo")).toBeGreaterThan(90000);
      expect(await c.get("nr:missing")).toBeNull();
      expect(await c.incrBy("nr:n", 5)).toBe(5);
      expect(await c.exists(["nr:foo", "nr:n", "nr:zz"])).toBe(2);
      expect(await c.mGet(["nr:foo", "nr:zz"])).toEqual(["bar", null]);
      const [a, b] = await c.multi().set("nr:m", "1").get("nr:m").execAsPipeline();
      expect([a, b] as unknown[]).toEqual(["OK", "1"]);
      expect(await c.ping()).toBe("PONG");
      expect(await c.dbSize()).toBeGreaterThan(0);
    } finally {
      await c.close();
    }
  });
});
