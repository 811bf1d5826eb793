// The client library against the real ./kv binary: commands, SET options, binary values,
// 10,000 pipelined calls, reconnect after a restart. Run `bun run build` first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Client, ConnectionError, createClient, ServerError } from "../../src/client/index.ts";
import { freePort } from "./_fake.ts";
import { type Kv, removeDir, spawnKv } from "./_server.ts";

let kv: Kv;
let c: Client;

beforeAll(async () => {
  kv = await spawnKv();
  c = createClient({ addrs: kv.addr, timeoutMs: 10_000 });
});

afterAll(async () => {
  await c?.close();
  await kv?.stop();
  if (kv) removeDir(kv.dataDir);
});

describe("commands against kv serve", () => {
  test("get/set/del/exists/ping", async () => {
    expect(await c.ping()).toBe("PONG");
    expect(await c.ping("hi")).toBe("hi");
    expect(await c.get("cmd:missing")).toBe(null);
    expect(await c.set("cmd:a", "1")).toBe(true);
    expect(await c.get("cmd:a")).toBe("1");
    expect(await c.exists("cmd:a", "cmd:missing")).toBe(1);
    expect(await c.del("cmd:a", "cmd:missing")).toBe(1);
    expect(await c.get("cmd:a")).toBe(null);
  });

  test("mget/mset", async () => {
    await c.mset({ "m:a": "1", "m:b": "2" });
    await c.mset([
      ["m:c", 3],
      [new TextEncoder().encode("m:d"), "4"],
    ]);
    expect(await c.mget(["m:a", "m:b", "m:c", "m:d", "m:none"])).toEqual(["1", "2", "3", "4", null]);
  });

  test("incr/incrBy/decr/decrBy and a WRONGTYPE-style error", async () => {
    expect(await c.incr("n:1")).toBe(1);
    expect(await c.incrBy("n:1", 10)).toBe(11);
    expect(await c.decr("n:1")).toBe(10);
    expect(await c.decrBy("n:1", 5)).toBe(5);
    await c.set("n:text", "abc");
    const err = await c.incr("n:text").catch((e) => e);
    expect(err).toBeInstanceOf(ServerError);
    expect(err.code).toBe("KV_SERVER");
    expect(err.prefix).toBe("ERR");
  });

  test("an unknown command rejects with ServerError ERR", async () => {
    const err = await c.command(["NOSUCHCOMMAND"]).catch((e) => e);
    expect(err).toBeInstanceOf(ServerError);
    expect(err.prefix).toBe("ERR");
  });

  test("expire/ttl/pttl/persist", async () => {
    expect(await c.ttl("t:none")).toBe(-2);
    await c.set("t:a", "v");
    expect(await c.ttl("t:a")).toBe(-1);
    expect(await c.expire("t:a", 100)).toBe(true);
    const ttl = await c.ttl("t:a");
    expect(ttl).toBeGreaterThan(95);
    expect(ttl).toBeLessThanOrEqual(100);
    expect(await c.pttl("t:a")).toBeGreaterThan(95_000);
    expect(await c.persist("t:a")).toBe(true);
    expect(await c.ttl("t:a")).toBe(-1);
    expect(await c.expire("t:none", 10)).toBe(false);
    expect(await c.pexpire("t:a", 50)).toBe(true);
    await Bun.sleep(120);
    expect(await c.get("t:a")).toBe(null);
  });

  test("SET options: EX PX EXAT PXAT KEEPTTL NX XX GET", async () => {
    expect(await c.set("s:a", "1", { ex: 100 })).toBe(true);
    expect(await c.ttl("s:a")).toBeGreaterThan(95);
    expect(await c.set("s:a", "2", { px: 50_000 })).toBe(true);
    expect(await c.pttl("s:a")).toBeLessThanOrEqual(50_000);
    const now = Math.floor(Date.now() / 1000);
    expect(await c.set("s:a", "3", { exat: now + 200 })).toBe(true);
    expect(await c.ttl("s:a")).toBeGreaterThan(150);
    expect(await c.set("s:a", "4", { pxat: Date.now() + 300_000 })).toBe(true);
    expect(await c.ttl("s:a")).toBeGreaterThan(250);
    expect(await c.set("s:a", "5", { keepTtl: true })).toBe(true);
    expect(await c.ttl("s:a")).toBeGreaterThan(250);
    expect(await c.set("s:a", "6")).toBe(true);
    expect(await c.ttl("s:a")).toBe(-1);
    expect(await c.set("s:a", "7", { nx: true })).toBe(false);
    expect(await c.set("s:new", "1", { nx: true })).toBe(true);
    expect(await c.set("s:none", "1", { xx: true })).toBe(false);
    expect(await c.get("s:none")).toBe(null);
    expect(await c.set("s:a", "8", { xx: true })).toBe(true);
    expect(await c.set("s:a", "9", { get: true })).toBe("8");
    expect(await c.set("s:fresh", "1", { get: true })).toBe(null);
    const err = await c.set("s:a", "x", { nx: true, xx: true }).catch((e) => e);
    expect(err).toBeInstanceOf(ServerError);
  });

  test("keys and dbsize", async () => {
    await c.mset({ "kp:1": "a", "kp:2": "b", "other": "c" });
    expect((await c.keys("kp:*")).sort()).toEqual(["kp:1", "kp:2"]);
    expect(await c.dbsize()).toBeGreaterThanOrEqual(3);
  });
});

describe("RESP3", () => {
  test("protocol: 3 sends HELLO 3; replies decode the same", async () => {
    const c3 = createClient({ addrs: kv.addr, timeoutMs: 5000, protocol: 3 });
    try {
      expect(await c3.set("r3:a", "1")).toBe(true);
      expect(await c3.get("r3:a")).toBe("1");
      expect(await c3.get("r3:none")).toBe(null);
      expect(await c3.mget(["r3:a", "r3:none"])).toEqual(["1", null]);
      const hello = await c3.command(["HELLO", "3"]);
      expect(hello).toBeInstanceOf(Map);
      expect((hello as Map<unknown, unknown>).get("proto")).toBe(3);
    } finally {
      await c3.close();
    }
  });
});

describe("binary safety", () => {
  test("all 256 byte values as key and value", async () => {
    const all = new Uint8Array(256);
    for (let i = 0; i < 256; i++) all[i] = i;
    expect(await c.set(all, all)).toBe(true);
    const back = await c.getBuffer(all);
    expect(back).toBeInstanceOf(Uint8Array);
    expect(Array.from(back!)).toEqual(Array.from(all));
    const [m] = await c.mgetBuffer([all]);
    expect(Array.from(m!)).toEqual(Array.from(all));
    const old = await c.setGetBuffer(all, "x");
    expect(Array.from(old!)).toEqual(Array.from(all));
    expect(await c.del(all)).toBe(1);
  });

  test("each single byte, and UTF-8 text, round-trip", async () => {
    const calls: Promise<boolean>[] = [];
    for (let i = 0; i < 256; i++) calls.push(c.set(Uint8Array.of(0x62, i), Uint8Array.of(i, i, 0x0d, 0x0a)));
    await Promise.all(calls);
    const got = await Promise.all(Array.from({ length: 256 }, (_, i) => c.getBuffer(Uint8Array.of(0x62, i))));
    got.forEach((v, i) => expect(Array.from(v!)).toEqual([i, i, 13, 10]));
    await c.set("utf8:ключ", "значение ✓ 🎉");
    expect(await c.get("utf8:ключ")).toBe("значение ✓ 🎉");
  });

  test("a 1 MiB value", async () => {
    const big = new Uint8Array(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    await c.set("big", big);
    const back = await c.getBuffer("big");
    expect(back!.length).toBe(big.length);
    expect(Buffer.compare(Buffer.from(back!), Buffer.from(big))).toBe(0);
  });
});

describe("pipelining", () => {
  test("10,000 concurrent calls on one connection, replies matched in order", async () => {
    const incrs = await Promise.all(Array.from({ length: 10_000 }, () => c.incr("pipe:counter")));
    expect(incrs).toEqual(Array.from({ length: 10_000 }, (_, i) => i + 1));
    await Promise.all(Array.from({ length: 10_000 }, (_, i) => c.set(`pipe:${i}`, `v${i}`)));
    const got = await Promise.all(Array.from({ length: 10_000 }, (_, i) => c.get(`pipe:${i}`)));
    expect(got.every((v, i) => v === `v${i}`)).toBe(true);
  });
});

describe("reconnect", () => {
  test("after the server restarts on the same address, calls succeed again", async () => {
    const port = freePort();
    let server = await spawnKv({ port });
    const kc = createClient({ addrs: server.addr, timeoutMs: 10_000, backoffMsMin: 20, backoffMsMax: 200 });
    try {
      expect(await kc.set("r:a", "1")).toBe(true);
      await server.stop("SIGKILL");
      // While it is down, calls wait (reconnecting with backoff) instead of failing; a write
      // that was never sent is known not applied, so it is sent once the server is back.
      await Bun.sleep(100);
      const pending = kc.ping();
      const pendingWrite = kc.set("r:c", "3");
      await Bun.sleep(300);
      server = await spawnKv({ port, dataDir: server.dataDir });
      expect(await pending).toBe("PONG");
      expect(await pendingWrite).toBe(true);
      expect(await kc.get("r:c")).toBe("3");
      expect(await kc.set("r:b", "2")).toBe(true);
      expect(await kc.get("r:b")).toBe("2");
      expect(kc.connectedAddr).toBe(`127.0.0.1:${port}`);
    } finally {
      await kc.close();
      await server.stop();
      removeDir(server.dataDir);
    }
  });

  test("a server that stays down: the call fails with ConnectionError at its deadline", async () => {
    const port = freePort();
    const server = await spawnKv({ port });
    const kc = createClient({ addrs: server.addr, timeoutMs: 500, backoffMsMin: 20 });
    try {
      expect(await kc.ping()).toBe("PONG");
      await server.stop("SIGKILL");
      const err = await kc.get("x").catch((e) => e);
      expect(err).toBeInstanceOf(ConnectionError);
      expect(err.message).toContain(`127.0.0.1:${port}`);
    } finally {
      kc.destroy();
      removeDir(server.dataDir);
    }
  });
});
