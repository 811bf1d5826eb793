// KV.WATCH on one node: a watcher killed and resumed at random points over a write stream sees
// every change exactly once and in order (the same records as a watcher that never left); FROM an
// index no longer held gets the COMPACTED error naming where to restart; the history is filled
// again by the replay after a restart.
import { expect, test } from "bun:test";
import { prng } from "../helpers/replay-model.ts";
import { RawResp } from "../helpers/resp-raw.ts";
import { startKv } from "../helpers/server.ts";
import { decodeFlat, Stream } from "./_stream.ts";

type Rec = [index: number, event: string, key: string, value: string | null];

/** The kv.change records among frames (others: the kv.watch confirmation) as [index, event, key, value]. */
function changes(frames: string[]): Rec[] {
  const out: Rec[] = [];
  for (const f of frames) {
    const v = decodeFlat(f);
    if (typeof v === "string") throw new Error(`error frame: ${v}`);
    if (v[0] === "kv.change") out.push([v[2] as number, v[3] as string, v[4] as string, v[5] as string | null]);
  }
  return out;
}

async function lastIndex(port: number): Promise<number> {
  const c = await RawResp.connect(port);
  try {
    // A write's index: the node's applied index moves past every earlier change.
    const r = await c.call([["SET", "__probe", "1"], ["KV.LASTINDEX"]]);
    return Number(r[1]!.slice(1, -2));
  } finally {
    c.close();
  }
}

test("a watcher killed and resumed at random points sees every change exactly once, in order", async () => {
  const seed = Number(process.env.SEED ?? Date.now() % 100000);
  const rnd = prng(seed);
  const kv = await startKv();
  try {
    const start = (await lastIndex(kv.port)) + 1;
    const ref = await Stream.open(kv.port);
    ref.send(["KV.WATCH", "k*", "FROM", String(start)]);
    await ref.settle(1, 10);
    const writer = await RawResp.connect(kv.port);
    const WRITES = 3000;
    let written = 0;
    const writing = (async () => {
      const deadline = Date.now() + 30_000;
      while (written < WRITES && Date.now() < deadline) {
        const batch: string[][] = [];
        for (let i = 0; i < 50; i++, written++) {
          const k = `k${Math.floor(rnd() * 20)}`;
          const r = rnd();
          batch.push(r < 0.5 ? ["SET", k, String(written)] : r < 0.7 ? ["INCR", `k-n${Math.floor(rnd() * 3)}`] : r < 0.85 ? ["DEL", k] : r < 0.95 ? ["MSET", k, "m", "other", "o"] : ["SET", k, "x", "PX", "1"]);
        }
        await writer.call(batch);
        await Bun.sleep(Math.floor(rnd() * 5));
      }
    })();
    // The flaky watcher: connects FROM the index after the last one it got, reads a while, is killed.
    const got: Rec[] = [];
    let next = start;
    let rounds = 0;
    const deadline = Date.now() + 30_000;
    for (; Date.now() < deadline; rounds++) {
      const w = await Stream.open(kv.port);
      w.send(["KV.WATCH", "k*", "FROM", String(next)]);
      await Bun.sleep(Math.floor(rnd() * 40));
      w.kill();
      const recs = changes(w.frames);
      // Records of one index arrive together (one entry's changes are one write to the socket) or
      // are cut: keep only whole indexes, the next connection starts at the first one not whole.
      let keep = recs.length;
      if (keep > 0 && w.frames.length > 0) {
        const lastIdx = recs[keep - 1]![0];
        while (keep > 0 && recs[keep - 1]![0] === lastIdx) keep--;
      }
      for (const r of recs.slice(0, keep)) got.push(r);
      if (keep > 0) next = recs[keep - 1]![0] + 1;
      const done = written >= WRITES && (await Promise.race([writing.then(() => true), Bun.sleep(0).then(() => false)]));
      if (done && rounds > 3) break;
    }
    await writing;
    // The last stretch: one connection reads to the end of what the reference saw.
    const refRecs = changes(await ref.settle(0, 200));
    const tail = await Stream.open(kv.port);
    tail.send(["KV.WATCH", "k*", "FROM", String(next)]);
    const want = refRecs.length - got.length;
    const t0 = Date.now();
    while (changes(tail.frames).length < want && Date.now() - t0 < 10_000) await Bun.sleep(10);
    got.push(...changes(tail.frames));
    tail.close();
    ref.close();
    writer.close();
    expect({ seed, rounds: rounds > 3, records: got }).toEqual({ seed, rounds: true, records: refRecs });
    // Every write of the stream shows: at least one change per write.
    expect(refRecs.length).toBeGreaterThanOrEqual(WRITES * 0.5);
    for (let i = 1; i < refRecs.length; i++) expect(refRecs[i]![0]).toBeGreaterThanOrEqual(refRecs[i - 1]![0]);
  } finally {
    await kv.stop();
  }
}, 120_000);

test("FROM an index no longer held: the COMPACTED error and where to restart; the replay refills the history", async () => {
  const kv = await startKv(["--watch-history", "10"]);
  let dataDir = kv.dataDir;
  try {
    const c = await RawResp.connect(kv.port);
    const first = (await lastIndex(kv.port)) + 1;
    const writes: string[][] = [];
    for (let i = 0; i < 50; i++) writes.push(["SET", `k${i % 7}`, String(i)]);
    await c.call(writes);
    const applied = await lastIndex(kv.port);
    const w = await Stream.open(kv.port);
    w.send(["KV.WATCH", "*", "FROM", String(first)]);
    const [err] = await w.settle(1, 20);
    expect(err).toStartWith("-COMPACTED changes from index ");
    expect(err).toContain(`(this node holds them from index ${applied - 9}, applied ${applied})`);
    expect(err).toContain(`then KV.WATCH * FROM ${applied + 1}`);
    // Within the history: the last records, exactly.
    w.send(["KV.WATCH", "k*", "FROM", String(applied - 5)]);
    const recs = changes(await w.settle(1, 100));
    expect(recs.map((r) => r[0])).toEqual([applied - 5, applied - 4, applied - 3, applied - 2, applied - 1]);
    expect(recs.at(-1)).toEqual([applied - 1, "set", "k0", "49"]);
    w.close();
    c.close();
    // Killed (a clean stop would snapshot, and changes before a snapshot are not replayed): after the
    // restart the log's entries are applied again and fill the history.
    await kv.stop({ signal: "SIGKILL", keepData: true });
    const again = await startKv(["--watch-history", "10"], { dataDir });
    try {
      const w2 = await Stream.open(again.port);
      w2.send(["KV.WATCH", "k0", "FROM", String(applied - 2)]);
      const after = changes(await w2.settle(1, 100));
      expect(after).toEqual([[applied - 1, "set", "k0", "49"]]);
      w2.close();
    } finally {
      await again.stop();
      dataDir = "";
    }
  } finally {
    if (dataDir !== "") await kv.stop();
  }
}, 60_000);
