// Transactions through real clients against the compiled binary: ioredis 6's multi()/exec() and
// node-redis 6's multi().exec(), each with its WATCH recipe (optimistic locking): concurrent
// clients incrementing one counter with WATCH/GET/MULTI/SET/EXEC retries must end with the
// counter equal to the number of successful EXECs. Also KV.REV across a restart (snapshot and log).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { createClient, MultiErrorReply, WatchError } from "redis";
import { startKv, type KvProcess } from "../helpers/server.ts";

let kv: KvProcess;

beforeAll(async () => {
  kv = await startKv();
});

afterAll(async () => {
  await kv?.stop();
});

const CLIENTS = 5;
const INCREMENTS = 20;
/** Retries per increment at most (a loop bounded by count and time). */
const RETRIES_MAX = 500;
const DEADLINE_MS = 30_000;

describe("ioredis 6", () => {
  test("multi()/exec(): replies per command, runtime errors in place, EXECABORT rejects", async () => {
    const r = new Redis({ host: "127.0.0.1", port: kv.port, lazyConnect: true, maxRetriesPerRequest: 1 });
    await r.connect();
    try {
      await r.del("io:a", "io:s");
      expect(await r.multi().set("io:a", "1").incr("io:a").get("io:a").exec()).toEqual([
        [null, "OK"],
        [null, 2],
        [null, "2"],
      ]);
      await r.set("io:s", "x");
      const res = (await r.multi().incr("io:s").set("io:b", "1").exec())!;
      expect((res[0]![0] as Error).message).toBe("ERR value is not an integer or out of range");
      expect(res[1]).toEqual([null, "OK"]);
      // A queuing error: ioredis rejects exec with EXECABORT.
      const bad = r.multi();
      (bad as unknown as { call: (...a: string[]) => void }).call("NOSUCHCMD");
      bad.set("io:c", "1");
      await expect(bad.exec()).rejects.toThrow(/EXECABORT Transaction discarded because of previous errors/);
      expect(await r.exists("io:c")).toBe(0);
      // A watched key changed by another client: exec resolves null.
      const other = new Redis({ host: "127.0.0.1", port: kv.port, lazyConnect: true });
      await other.connect();
      await r.watch("io:a");
      await other.set("io:a", "9");
      expect(await r.multi().set("io:a", "3").exec()).toBeNull();
      expect(await r.get("io:a")).toBe("9");
      other.disconnect();
    } finally {
      r.disconnect();
    }
  });

  test(`WATCH recipe: ${CLIENTS} clients x ${INCREMENTS} increments, the counter equals the successful EXECs`, async () => {
    const key = "io:counter";
    const setup = new Redis({ host: "127.0.0.1", port: kv.port, lazyConnect: true });
    await setup.connect();
    await setup.set(key, "0");
    const deadline = Date.now() + DEADLINE_MS;
    let aborted = 0;
    const worker = async (): Promise<number> => {
      const c = new Redis({ host: "127.0.0.1", port: kv.port, lazyConnect: true });
      await c.connect();
      let ok = 0;
      try {
        for (let i = 0; i < INCREMENTS; i++) {
          for (let tries = 0; tries < RETRIES_MAX && Date.now() < deadline; tries++) {
            await c.watch(key);
            const v = Number(await c.get(key));
            const r = await c.multi().set(key, String(v + 1)).exec();
            if (r !== null) {
              ok++;
              break;
            }
            aborted++;
          }
        }
      } finally {
        c.disconnect();
      }
      return ok;
    };
    const oks = await Promise.all(Array.from({ length: CLIENTS }, worker));
    const total = oks.reduce((a, b) => a + b, 0);
    expect(Number(await setup.get(key))).toBe(total);
    expect(total).toBe(CLIENTS * INCREMENTS);
    expect(aborted).toBeGreaterThan(0); // the clients did contend
    setup.disconnect();
  }, 60_000);
});

describe("node-redis 6", () => {
  test("multi().exec(): replies, a runtime error in place, WatchError after a watched key changed", async () => {
    const c = createClient({ socket: { host: "127.0.0.1", port: kv.port, reconnectStrategy: false } });
    await c.connect();
    const other = createClient({ socket: { host: "127.0.0.1", port: kv.port, reconnectStrategy: false } });
    await other.connect();
    try {
      await c.del(["nr:a", "nr:s"]);
      expect((await c.multi().set("nr:a", "1").incr("nr:a").get("nr:a").exec()) as unknown[]).toEqual(["OK", 2, "2"]);
      await c.set("nr:s", "x");
      // A runtime error inside: node-redis rejects with MultiErrorReply, which holds every reply.
      let err: unknown;
      try {
        await c.multi().incr("nr:s").set("nr:b", "1").exec();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(MultiErrorReply);
      const replies = (err as MultiErrorReply).replies;
      expect(String(replies[0])).toContain("ERR value is not an integer or out of range");
      expect(replies[1] as unknown).toBe("OK");
      expect(await c.get("nr:b")).toBe("1");
      await c.watch("nr:a");
      await other.set("nr:a", "9");
      await expect(c.multi().set("nr:a", "3").exec()).rejects.toBeInstanceOf(WatchError);
      expect(await c.get("nr:a")).toBe("9");
      // A read-only transaction.
      expect((await c.multi().get("nr:a").exists("nr:a").exec()) as unknown[]).toEqual(["9", 1]);
    } finally {
      await c.quit();
      await other.quit();
    }
  });

  test(`WATCH recipe: ${CLIENTS} clients x ${INCREMENTS} increments, the counter equals the successful EXECs`, async () => {
    const key = "nr:counter";
    const setup = createClient({ socket: { host: "127.0.0.1", port: kv.port, reconnectStrategy: false } });
    await setup.connect();
    await setup.set(key, "0");
    const deadline = Date.now() + DEADLINE_MS;
    const worker = async (): Promise<number> => {
      const c = createClient({ socket: { host: "127.0.0.1", port: kv.port, reconnectStrategy: false } });
      await c.connect();
      let ok = 0;
      try {
        for (let i = 0; i < INCREMENTS; i++) {
          for (let tries = 0; tries < RETRIES_MAX && Date.now() < deadline; tries++) {
            await c.watch(key);
            const v = Number(await c.get(key));
            try {
              await c.multi().set(key, String(v + 1)).exec();
              ok++;
              break;
            } catch (e) {
              if (!(e instanceof WatchError)) throw e;
            }
          }
        }
      } finally {
        await c.quit();
      }
      return ok;
    };
    const oks = await Promise.all(Array.from({ length: CLIENTS }, worker));
    const total = oks.reduce((a, b) => a + b, 0);
    expect(Number(await setup.get(key))).toBe(total);
    expect(total).toBe(CLIENTS * INCREMENTS);
    await setup.quit();
  }, 60_000);
});

test("KV.REV: the log index of a key's last change, 0 when missing; the same after a restart from a snapshot and the log", async () => {
  const node = await startKv();
  try {
    const c = new Redis({ host: "127.0.0.1", port: node.port, lazyConnect: true });
    await c.connect();
    await c.set("r:a", "1");
    const ra = Number(await c.call("KV.REV", "r:a"));
    await c.set("r:b", "1");
    const rb = Number(await c.call("KV.REV", "r:b"));
    expect(rb).toBeGreaterThan(ra);
    expect(await c.call("KV.REV", "r:missing")).toBe(0);
    await c.set("r:gone", "1");
    const beforeDel = Number(await c.call("KV.REV", "r:gone"));
    await c.del("r:gone"); // its removal (a tombstone) is kept by the snapshot below
    await c.call("SAVE"); // a snapshot holds both revisions
    await c.multi().incr("r:b").set("r:c", "x").exec(); // one entry: both keys get its index
    const rb2 = Number(await c.call("KV.REV", "r:b"));
    expect(rb2).toBeGreaterThan(rb);
    expect(Number(await c.call("KV.REV", "r:c"))).toBe(rb2);
    await c.set("r:t", "1", "PX", 50);
    await Bun.sleep(100);
    expect(await c.call("KV.REV", "r:t")).toBe(0); // expired: missing
    c.disconnect();
    const dataDir = node.dataDir;
    await node.stop({ keepData: true });
    const again = await startKv([], { dataDir });
    try {
      const d = new Redis({ host: "127.0.0.1", port: again.port, lazyConnect: true });
      await d.connect();
      expect([Number(await d.call("KV.REV", "r:a")), Number(await d.call("KV.REV", "r:b")), Number(await d.call("KV.REV", "r:c"))]).toEqual([ra, rb2, rb2]);
      // A transaction watching r:gone as absent before its deletion aborts after the restart too;
      // watching it from after the deletion runs.
      expect(await d.call("KV.TXN", "1", "r:gone", String(beforeDel), "0", "2", "GET", "r:gone")).toBeNull();
      expect(await d.call("KV.TXN", "1", "r:gone", String(rb2), "0", "2", "GET", "r:gone")).toEqual([null]);
      d.disconnect();
    } finally {
      await again.stop();
    }
  } catch (e) {
    await node.stop().catch(() => {});
    throw e;
  }
}, 60_000);
