// Differential test against Debian's redis-server: pub/sub framing in RESP2 and RESP3 (replies and
// messages byte for byte, subscribed mode's errors, PING, PUBSUB) and the keyspace notifications of
// every kv command, in order. Both servers run on free loopback ports in temp dirs, killed after.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RedisProcess, startRedisServer } from "../helpers/redis-server.ts";
import { Stream } from "./_stream.ts";
import { type KvProcess, startKv } from "../helpers/server.ts";

let redis: RedisProcess | null = null;
let redisPort = 0;
let redisDir = "";
let kv: KvProcess | null = null;

beforeAll(async () => {
  redisDir = mkdtempSync(join(tmpdir(), "kv-pubsub-diff-"));
  redis = await startRedisServer(redisDir, ["--databases", "1"]);
  redisPort = redis.port;
  kv = await startKv();
});

afterAll(async () => {
  await redis?.stop();
  if (redisDir !== "") rmSync(redisDir, { recursive: true, force: true });
  await kv?.stop();
});

/** Runs `script` against a fresh pair of connections on each server; returns the frames each saw. */
async function both(script: (sub: Stream, pub: Stream) => Promise<string[]>): Promise<[string[], string[]]> {
  const results: string[][] = [];
  for (const port of [redisPort, kv!.port]) {
    const sub = await Stream.open(port);
    const pub = await Stream.open(port);
    pub.send(["FLUSHALL"], ["CONFIG", "SET", "notify-keyspace-events", ""]);
    await pub.settle(2, 20);
    try {
      results.push(await script(sub, pub));
    } finally {
      sub.close();
      pub.close();
    }
  }
  return [results[0]!, results[1]!];
}

for (const proto of [2, 3] as const) {
  test(`pub/sub framing, RESP${proto}: subscribe, messages, patterns, subscribed mode, PUBSUB`, async () => {
    const [r, k] = await both(async (sub, pub) => {
      const log: string[] = [];
      if (proto === 3) {
        sub.send(["HELLO", "3"]);
        await sub.settle(1, 20);
      }
      sub.send(["SUBSCRIBE", "a", "b"], ["PSUBSCRIBE", "h*", "x?"]);
      log.push("sub:", ...(await sub.settle(4, 30)));
      pub.send(["PUBLISH", "a", "one"], ["PUBLISH", "hello", "two"], ["PUBLISH", "xy", "3"], ["PUBLISH", "nobody", "4"], ["PUBSUB", "NUMSUB", "a", "b", "c"], ["PUBSUB", "NUMPAT"], ["PUBSUB", "CHANNELS", "a*"], ["PUBSUB", "SHARDCHANNELS"]);
      log.push("pub:", ...(await pub.settle(8, 30)));
      log.push("sub:", ...(await sub.settle(3, 30)));
      sub.send(["PING"], ["PING", "hi"], ["GET", "k"], ["SET", "k", "v"], ["GET"], ["NOSUCH"], ["UNSUBSCRIBE", "a", "zz"], ["PUNSUBSCRIBE"], ["UNSUBSCRIBE"], ["UNSUBSCRIBE"], ["PUNSUBSCRIBE"], ["PING"]);
      log.push("sub:", ...(await sub.settle(12, 50)));
      sub.send(["SSUBSCRIBE", "s1"]);
      log.push("sub:", ...(await sub.settle(1, 30)));
      pub.send(["SPUBLISH", "s1", "m"], ["PUBLISH", "s1", "not-sharded"], ["PUBSUB", "SHARDNUMSUB", "s1"]);
      log.push("pub:", ...(await pub.settle(3, 30)));
      sub.send(["SUNSUBSCRIBE"], ["RESET"], ["PING"]);
      log.push("sub:", ...(await sub.settle(3, 50)));
      return log;
    });
    expect(k).toEqual(r);
  });
}

/** Commands whose keyspace notifications are compared: every write kv has, on hits and misses. */
const WRITES: string[][] = [
  ["SET", "s", "1"], ["SET", "s", "2", "EX", "100"], ["SET", "s", "3", "NX"], ["SET", "s", "4", "XX", "GET"], ["SET", "s", "5", "KEEPTTL"],
  ["SETNX", "s", "x"], ["SETNX", "n", "x"], ["GETSET", "n", "y"], ["GETDEL", "n"], ["GETDEL", "n"],
  ["SET", "g", "1"], ["GETEX", "g", "EX", "100"], ["GETEX", "g", "PERSIST"], ["GETEX", "g", "PERSIST"], ["GETEX", "g"], ["GETEX", "g", "PXAT", "1"],
  ["MSET", "m1", "a", "m2", "b"], ["MSETNX", "m1", "c", "m3", "d"], ["MSETNX", "m4", "c", "m5", "d"],
  ["APPEND", "ap", "x"], ["APPEND", "ap", "y"], ["INCR", "i"], ["DECR", "i"], ["INCRBY", "i", "5"], ["DECRBY", "i", "2"], ["INCRBYFLOAT", "f", "1.5"],
  ["SETRANGE", "sr", "2", "ab"], ["SETRANGE", "sr", "0", ""], ["SETRANGE", "nope", "0", ""], ["SETEX", "se", "100", "v"], ["PSETEX", "pse", "100000", "v"],
  ["DEL", "m1", "m2", "missing"], ["UNLINK", "m4"], ["RENAME", "m5", "r1"], ["RENAMENX", "r1", "ap"], ["RENAMENX", "r1", "r2"], ["RENAME", "r2", "r2"], ["SET", "rx", "1"], ["RENAME", "r1", "rx"], ["RENAME", "rx", "r1"],
  ["COPY", "r2", "c1"], ["COPY", "r2", "c1"], ["COPY", "r2", "c1", "REPLACE"], ["EXPIRE", "c1", "100"], ["EXPIRE", "c1", "100", "NX"], ["PEXPIRE", "c1", "500000", "GT"], ["PERSIST", "c1"], ["PERSIST", "c1"],
  ["EXPIREAT", "c1", "1"], ["EXPIRE", "missing", "10"], ["SET", "t", "1", "PX", "30"],
  ["INCR", "s"], ["TOUCH", "s"], ["FLUSHALL"], ["SET", "after", "flush"],
];

// kv sends no `keymiss` (m) events: accepted and shown by CONFIG, never produced (docs/protocol.md).
for (const flags of ["KEA", "K$", "Eg", "KEx", "KA", "AKEn", "Kn"]) {
  test(`keyspace notifications (${flags}) of every write kv has, in order`, async () => {
    const [r, k] = await both(async (sub, pub) => {
      pub.send(["CONFIG", "SET", "notify-keyspace-events", flags], ["CONFIG", "GET", "notify-keyspace-events"]);
      const log = ["config:", ...(await pub.settle(2, 20))];
      sub.send(["PSUBSCRIBE", "__key*__:*"]);
      await sub.settle(1, 20);
      for (const w of WRITES) {
        pub.send(w);
        const reply = await pub.settle(1, 0);
        log.push(`${w.join(" ")} -> ${reply.join("")}`);
        if (w[0] === "SET" && w[1] === "t") await Bun.sleep(400); // its expiry comes from the expire cycle
      }
      log.push("events:", ...(await sub.settle(1, 300)));
      return log;
    });
    expect(k).toEqual(r);
  });
}

test("CONFIG SET notify-keyspace-events: a bad class character gets Redis's error", async () => {
  const [r, k] = await both(async (_sub, pub) => {
    pub.send(["CONFIG", "SET", "notify-keyspace-events", "KQ"], ["CONFIG", "GET", "notify-keyspace-events"], ["CONFIG", "SET", "notify-keyspace-events", "gx$E"], ["CONFIG", "GET", "notify-keyspace-events"], ["CONFIG", "SET", "notify-keyspace-events", "gn"], ["CONFIG", "GET", "notify-keyspace-events"], ["CONFIG", "SET", "notify-keyspace-events", "Anm"], ["CONFIG", "GET", "notify-keyspace-events"]);
    return pub.settle(8, 20);
  });
  expect(k).toEqual(r);
});
