// One node: a subscriber that stops reading is closed past the pubsub output limit (memory stays
// bounded, the publisher goes on); KV.WATCH's frames in RESP3 (pushes among ordinary replies) and in
// RESP2 (subscribed mode).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connect } from "node:net";
import { RawResp } from "../helpers/resp-raw.ts";
import { type KvProcess, startKv } from "../helpers/server.ts";
import { decodeFlat, Stream } from "./_stream.ts";

let kv: KvProcess;
beforeAll(async () => {
  kv = await startKv(["--client-output-buffer-limit-pubsub", "1mb 0 0"]);
});
afterAll(async () => {
  await kv.stop();
});

/**
 * A subscriber to `ch` that stops reading once subscribed: the kernel's buffers fill, then the
 * server's. closedOnResume() reads again and says whether the server had closed it (bounded: 5 s).
 */
async function stalledSubscriber(port: number) {
  const sock = connect({ host: "127.0.0.1", port });
  let closed = false;
  let received = 0;
  sock.on("data", (d) => (received += d.length));
  sock.on("close", () => (closed = true));
  sock.on("error", () => {});
  await new Promise<void>((r) => sock.once("connect", () => r()));
  sock.write("*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n");
  for (let i = 0; i < 200 && received === 0; i++) await Bun.sleep(5);
  sock.pause();
  return {
    received: () => received,
    async closedOnResume(): Promise<boolean> {
      sock.resume();
      for (let i = 0; i < 500 && !closed; i++) await Bun.sleep(10);
      return closed;
    },
  };
}

test("a subscriber that stops reading is closed past the hard limit; the publisher is unaffected", async () => {
  const sub = await stalledSubscriber(kv.port);
  const pub = await RawResp.connect(kv.port);
  const msg = "x".repeat(64 * 1024);
  let sent = 0;
  let receivers = 1;
  const deadline = Date.now() + 30_000;
  // 64 KiB messages until the subscriber is gone (bounded by count and time: 4000 x 64 KiB = 250 MiB).
  while (receivers > 0 && sent < 4000 && Date.now() < deadline) {
    const replies = await pub.call(Array.from({ length: 16 }, () => ["PUBLISH", "ch", msg]));
    sent += 16;
    receivers = Number(replies.at(-1)!.slice(1, -2));
  }
  expect(receivers).toBe(0);
  expect(await pub.call([["PUBSUB", "NUMSUB", "ch"]])).toEqual(["*2\r\n$2\r\nch\r\n:0\r\n"]);
  // What reached the subscriber is bounded by the kernel's buffers plus the limit, far below what was sent.
  expect(sent * msg.length).toBeGreaterThan(1024 * 1024);
  expect(await sub.closedOnResume()).toBe(true);
  expect(sub.received()).toBeLessThan(sent * msg.length);
  expect(kv.output()).toContain("passed the pubsub hard limit (1048576)");
  // CONFIG SET changes the limit at run time; 0 (unlimited in Redis) is refused.
  expect(await pub.call([["CONFIG", "SET", "client-output-buffer-limit", "pubsub 2mb 1mb 10"], ["CONFIG", "GET", "client-output-buffer-limit"]])).toEqual([
    "+OK\r\n",
    "*2\r\n$26\r\nclient-output-buffer-limit\r\n$50\r\nnormal 67108864 0 0 pubsub 2097152 1048576 10\r\n".replace("$50", `$${"normal 67108864 0 0 pubsub 2097152 1048576 10".length}`),
  ]);
  const [refused] = await pub.call([["CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0"]]);
  expect(refused).toStartWith("-ERR CONFIG SET failed (possibly related to argument 'client-output-buffer-limit') - kv holds no unbounded subscriber output");
  pub.close();
}, 60_000);

test("KV.WATCH in RESP3: pushes among the replies of the same connection; KV.UNWATCH", async () => {
  const c = await Stream.open(kv.port);
  c.send(["HELLO", "3"]);
  await c.settle(1, 10);
  c.send(["KV.WATCH", "w*"], ["SET", "w1", "a"], ["GET", "w1"], ["DEL", "w1"], ["SET", "other", "b"], ["KV.UNWATCH"], ["SET", "w1", "c"]);
  const frames = await c.settle(9, 150);
  const [confirm, ...rest] = frames;
  expect(confirm).toStartWith(">3\r\n$8\r\nkv.watch\r\n$2\r\nw*\r\n:");
  const first = Number(decodeFlat(confirm!)[2]);
  // A write's change record is pushed as the entry applies, before its reply (as Redis pushes a
  // notification produced while the command runs before the command's reply).
  const kinds = rest.map((f) => (f[0] === ">" ? (decodeFlat(f) as unknown[]).join(" ") : f));
  expect(kinds).toEqual([
    `kv.change w* ${first} set w1 a`,
    "+OK\r\n",
    "$1\r\na\r\n",
    `kv.change w* ${first + 1} del w1 `,
    ":1\r\n",
    "+OK\r\n",
    "kv.unwatch w* 0",
    "+OK\r\n",
  ]);
  expect(rest[3]).toEndWith("$2\r\nw1\r\n_\r\n"); // deleted: a nil value
  c.close();
});

test("KV.WATCH in RESP2: subscribed mode, records as arrays, other commands refused", async () => {
  const c = await Stream.open(kv.port);
  const w = await RawResp.connect(kv.port);
  c.send(["KV.WATCH", "r*"], ["GET", "r1"], ["PING"]);
  const f = await c.settle(3, 50);
  expect(f[1]).toBe("-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");
  expect(f[2]).toBe("*2\r\n$4\r\npong\r\n$0\r\n\r\n");
  const [info] = await w.call([["INFO", "stats"]]);
  expect(info).toContain("\r\nkv_watches:1\r\n");
  expect(info).toContain("\r\npubsub_channels:0\r\n");
  await w.call([["SET", "r1", "v"], ["INCR", "r2"], ["RENAME", "r2", "q"]]);
  const recs = (await c.settle(3, 100)).map((x) => decodeFlat(x) as unknown[]);
  expect(recs.map((r) => r.slice(3))).toEqual([["set", "r1", "v"], ["incrby", "r2", "1"], ["rename_from", "r2", null]]);
  expect(recs.every((r) => r[0] === "kv.change" && r[1] === "r*")).toBe(true);
  c.send(["KV.UNWATCH", "r*"], ["GET", "r1"]);
  expect(await c.settle(2, 50)).toEqual(["*3\r\n$10\r\nkv.unwatch\r\n$2\r\nr*\r\n:0\r\n", "$1\r\nv\r\n"]);
  c.close();
  w.close();
});

test("a subscriber past the soft limit for its seconds is closed, though under the hard limit", async () => {
  const soft = await startKv(["--client-output-buffer-limit-pubsub", "512mb 256kb 1"]);
  try {
    const sub = await stalledSubscriber(soft.port);
    const pub = await RawResp.connect(soft.port);
    const msg = "y".repeat(64 * 1024);
    let receivers = 1;
    let sent = 0;
    const t0 = Date.now();
    // 1 MiB every 50 ms (bounded: 10 s, 200 MiB), far below the hard limit for the first seconds.
    while (receivers > 0 && Date.now() - t0 < 10_000) {
      const replies = await pub.call(Array.from({ length: 16 }, () => ["PUBLISH", "ch", msg]));
      sent += 16;
      receivers = Number(replies.at(-1)!.slice(1, -2));
      await Bun.sleep(50);
    }
    expect(receivers).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000); // not before its seconds
    expect(sent * msg.length).toBeLessThan(512 * 1024 * 1024);
    expect(soft.output()).toContain("stayed past the pubsub soft limit (262144 bytes) for 1 s");
    expect(await sub.closedOnResume()).toBe(true);
    pub.close();
  } finally {
    await soft.stop();
  }
}, 60_000);
