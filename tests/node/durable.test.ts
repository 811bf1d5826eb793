// The single-node log runtime with a recording file layer: a reply is produced only after the
// fsync that covers its write; failures give "outcome unknown" then "refused", never "failed".
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DurableLog } from "../../src/node/durable.ts";
import { RecordingIo, SnapshotStore, snapshotName } from "../../src/storage/index.ts";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { collectReplies } from "../helpers/durable.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function open(io: RecordingIo, dataDir?: string, snapshotLogBytes = 1 << 30, segmentBytesMax = 1 << 20) {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), "kv-durable-"));
  if (!dataDir) dirs.push(dir);
  const d = await DurableLog.open<string>({ dataDir: dir, fsync: "always", segmentBytesMax, snapshotLogBytes, io });
  const replies = collectReplies(d, { onApplied: (owner) => io.note("ack", owner) });
  return { d, dir, replies };
}

async function settle(replies: Map<string, string>, n: number): Promise<void> {
  for (let i = 0; i < 500 && replies.size < n; i++) await Bun.sleep(2);
}

/** Proposes SET k<i> v<i> for i in [from, to) and waits for every reply so far (to in all). */
async function setRange(d: DurableLog<string>, replies: Map<string, string>, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) d.propose(["SET", `k${i}`, `v${i}`], 1, `a${i}`);
  await settle(replies, to);
  expect(replies.size).toBe(to);
}

describe("DurableLog", () => {
  test("every reply is produced after a datasync that follows the write carrying its record", async () => {
    const io = new RecordingIo();
    io.syncDelayMs = 3; // slow disk: later proposals pile up into group commits
    const { d, dir, replies } = await open(io);
    for (let i = 0; i < 50; i++) {
      d.propose(["SET", `k${i}`, `v${i}`], 1000 + i, `c${i}`);
      if (i % 7 === 0) await Bun.sleep(1);
    }
    await settle(replies, 50);
    expect(replies.size).toBe(50);
    for (let i = 0; i < 50; i++) expect(replies.get(`c${i}`)).toBe("+OK\r\n");
    // Walk the event log: an ack is legal only if a write to the WAL and then a datasync of it came before.
    let writesSinceSync = 0;
    let synced = 0; // writes covered by a datasync
    let acks = 0;
    for (const e of io.events) {
      if (e.op === "write" && e.path?.includes("/wal/")) writesSinceSync++;
      else if (e.op === "datasync" && e.path?.includes("/wal/")) {
        synced += writesSinceSync;
        writesSinceSync = 0;
      } else if (e.op === "ack") {
        acks++;
        expect(synced).toBeGreaterThan(0);
      }
    }
    expect(acks).toBe(50);
    // Group commit: fewer fsyncs than writes.
    expect(d.walStats.fsyncs).toBeLessThan(50);
    await d.close();

    // Replay gives the same state.
    const again = await open(new RecordingIo(), dir);
    expect(again.d.fsm.db.get("k49", 0)).toBe("v49");
    expect(again.d.recovery.replayedRecords).toBe(50);
    await again.d.close();
  });

  test("the expiry sweep never deletes a key that a write waiting for its fsync still sees live; replay agrees", async () => {
    const io = new RecordingIo();
    const { d, dir, replies } = await open(io);
    const t = 1_700_000_000_000;
    d.propose(["SET", "k", "old", "PXAT", String(t + 100)], t, "w1");
    await settle(replies, 1);
    io.syncDelayMs = 30; // the next write waits for its fsync while the sweep runs
    d.propose(["SET", "k", "new", "NX"], t + 99, "w2"); // k is live at t+99: NX must fail
    d.propose(["GET", "k"], t + 99, "r2");
    await Bun.sleep(5);
    // The sweep fires at t+100, while w2 is still in flight: k is not reclaimed under it.
    expect(d.sweepExpired(t + 100, 100)).toBe(0);
    await settle(replies, 3);
    expect(replies.get("w2")).toBe("$-1\r\n");
    expect(replies.get("r2")).toBe("$3\r\nold\r\n");
    // Once nothing is pending, the expired key goes; and a write stamped earlier than the sweep runs after it.
    io.syncDelayMs = 0;
    expect(d.sweepExpired(t + 100, 100)).toBe(1);
    d.propose(["SET", "k", "later", "NX"], t + 50, "w3");
    await settle(replies, 4);
    expect(replies.get("w3")).toBe("+OK\r\n");
    const live = d.fsm.digest(t + 101);
    await d.close();
    const again = await open(new RecordingIo(), dir);
    expect(again.d.fsm.db.get("k", t + 101)).toBe("later");
    expect(again.d.fsm.digest(t + 101)).toBe(live);
    // A clock stepped back across the restart still stamps, and runs reads, no earlier than
    // what was applied.
    expect(again.d.now(t)).toBe(t + 100);
    expect(again.d.propose(["SET", "x", "1"], t, "x").nowMs).toBe(t + 100);
    expect(again.d.now(t + 500)).toBe(t + 500);
    expect(again.d.now(t + 400)).toBe(t + 500);
    await settle(again.replies, 1);
    await again.d.close();
  });

  test("a failed fsync: that batch's outcome is unknown, later writes are refused, nothing is applied", async () => {
    const io = new RecordingIo();
    const { d, replies } = await open(io);
    d.propose(["SET", "a", "1"], 1, "ok");
    await settle(replies, 1);
    expect(replies.get("ok")).toBe("+OK\r\n");
    io.failNext("datasync", "EIO", { pathIncludes: "/wal/" });
    d.propose(["SET", "b", "2"], 2, "unknown");
    await settle(replies, 2);
    expect(replies.get("unknown")).toBe("StorageIoError");
    d.propose(["SET", "c", "3"], 3, "refused");
    await settle(replies, 3);
    expect(replies.get("refused")).toBe("WalFailedError");
    expect(d.fsm.db.get("b", 10)).toBeUndefined();
    expect(d.fsm.db.get("c", 10)).toBeUndefined();
    expect(d.fsm.db.get("a", 10)).toBe("1");
    await d.close().catch(() => {});
  });

  test("a full disk (ENOSPC on write) is reported, and what was acknowledged survives a restart", async () => {
    const io = new RecordingIo();
    const { d, dir, replies } = await open(io);
    d.propose(["SET", "kept", "yes"], 1, "ok");
    await settle(replies, 1);
    io.failNext("write", "ENOSPC", { pathIncludes: "/wal/" });
    d.propose(["SET", "lost", "?"], 2, "full");
    await settle(replies, 2);
    expect(replies.get("full")).toBe("StorageIoError");
    await d.close().catch(() => {});
    const again = await open(new RecordingIo(), dir);
    expect(again.d.fsm.db.get("kept", 10)).toBe("yes");
    await again.d.close();
  });

  test("a snapshot requested while an older one is being written waits for it, then covers every write before the request", async () => {
    const io = new RecordingIo();
    const { d, dir, replies } = await open(io);
    for (let i = 0; i < 10; i++) d.propose(["SET", `a${i}`, "1"], 1, `a${i}`);
    await settle(replies, 10);
    expect(replies.size).toBe(10);
    // Hold the first snapshot's fsync until the test lets it go.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let holding = 0;
    io.beforeDatasync = (path) => {
      if (path?.includes("/snap/") && holding++ === 0) return held;
    };
    const first = d.snapshot();
    for (let i = 0; i < 5; i++) d.propose(["SET", `b${i}`, "2"], 2, `b${i}`);
    await settle(replies, 15);
    expect(replies.size).toBe(15);
    expect(d.snapshotInProgress).toBe(true);
    const second = d.snapshot(); // like SAVE after those 5 writes
    const third = d.snapshot(); // shares the second: nothing was applied in between
    await Bun.sleep(20);
    expect(holding).toBe(1); // the second did not start while the first runs
    release();
    const [s1, s2, s3] = await Promise.all([first, second, third]);
    expect(s1.lastIndex).toBe(10);
    expect(s2.lastIndex).toBe(15);
    expect(s3.lastIndex).toBe(15);
    expect(holding).toBe(2); // exactly one more snapshot was written for the second and third
    await d.close();
    const again = await open(new RecordingIo(), dir);
    expect(again.d.recovery.snapshotIndex).toBe(15);
    expect(again.d.recovery.replayedRecords).toBe(0);
    expect(again.d.fsm.db.get("b4", 10)).toBe("2");
    await again.d.close();
  });

  test("a log that passed the threshold while a snapshot was written gets the next snapshot when it ends", async () => {
    const io = new RecordingIo();
    const { d, dir, replies } = await open(io, undefined, 300);
    const gate = holdSnapshots(io);
    for (let i = 0; i < 10; i++) d.propose(["SET", `a${i}`, "x".repeat(40)], 1, `a${i}`);
    await settle(replies, 10);
    await until(() => gate.started === 1); // the threshold started one; its fsync is held
    for (let i = 0; i < 10; i++) d.propose(["SET", `b${i}`, "y".repeat(40)], 2, `b${i}`);
    await settle(replies, 20);
    expect(replies.size).toBe(20);
    await Bun.sleep(20);
    expect(gate.started).toBe(1); // none starts while one runs
    gate.release();
    await until(() => gate.started === 2); // the second starts as the first ends, with no new write
    gate.release();
    await until(() => !d.snapshotInProgress);
    expect(d.lastSnapshot!.lastIndex).toBe(20);
    await d.close();
    const again = await open(new RecordingIo(), dir);
    expect(again.d.recovery.snapshotIndex).toBe(20);
    await again.d.close();
  });

  test("--snapshot-log-bytes 0: a snapshot after each batch of writes, none without writes", async () => {
    const io = new RecordingIo();
    const { d, replies } = await open(io, undefined, 0);
    d.propose(["SET", "k", "v"], 1, "k");
    await settle(replies, 1);
    await until(() => !d.snapshotInProgress && d.lastSnapshot !== null);
    const syncs = () => io.events.filter((e) => e.op === "datasync" && e.path?.includes("/snap/")).length;
    const after = syncs();
    await Bun.sleep(50);
    expect(syncs()).toBe(after);
    expect(d.snapshotInProgress).toBe(false);
    await d.close();
  });

  test("close during a SAVE that waits for an older snapshot: the SAVE fails, no snapshot starts, nothing is lost", async () => {
    const io = new RecordingIo();
    const { d, dir, replies } = await open(io);
    const gate = holdSnapshots(io, 1);
    d.propose(["SET", "a", "1"], 1, "a");
    await settle(replies, 1);
    const first = d.snapshot();
    await until(() => gate.started === 1);
    d.propose(["SET", "b", "2"], 2, "b");
    await settle(replies, 2);
    const save = d.snapshot(); // waits: the first does not cover "b"
    const closed = d.close();
    gate.release();
    expect((await first).lastIndex).toBe(1);
    await expect(save).rejects.toThrow("shutting down");
    await closed;
    expect(gate.started).toBe(1);
    const again = await open(new RecordingIo(), dir);
    expect(again.d.recovery.snapshotIndex).toBe(1);
    expect(again.d.fsm.db.get("b", 10)).toBe("2");
    await again.d.close();
  });
});

describe("DurableLog recovery with a corrupt newest snapshot (its checksum is checked while it loads)", () => {
  function flipBodyByte(path: string): void {
    const b = readFileSync(path);
    b[b.length - 3]! ^= 0x10;
    writeFileSync(path, b);
  }

  test("everything loaded from it is dropped; the older snapshot plus the log give the full state", async () => {
    const { d, dir, replies } = await open(new RecordingIo());
    for (let i = 0; i < 30; i++) d.propose(["SET", `k${i}`, `old${i}`], 1, `a${i}`);
    await settle(replies, 30);
    await d.snapshot();
    for (let i = 0; i < 30; i++) d.propose(["SET", `k${i}`, `new${i}`], 2, `b${i}`);
    d.propose(["SET", "only-new", "x"], 2, "c");
    await settle(replies, 61);
    expect(replies.size).toBe(61);
    await d.snapshot();
    await d.close();
    const snaps = readdirSync(join(dir, "snap")).filter((f) => f.endsWith(".snap")).sort();
    expect(snaps.length).toBe(2);
    flipBodyByte(join(dir, "snap", snaps[1]!));

    const again = await open(new RecordingIo(), dir);
    expect(again.d.recovery.snapshotIndex).toBe(30);
    expect(again.d.recovery.replayedRecords).toBe(31);
    expect(again.d.applied).toBe(61);
    for (let i = 0; i < 30; i++) expect(again.d.fsm.db.get(`k${i}`, 10)).toBe(`new${i}`);
    expect(again.d.fsm.db.get("only-new", 10)).toBe("x");
    expect(again.d.fsm.db.dbsize()).toBe(31);
    await again.d.close();
  });

  test("the corrupt snapshot is set aside: the next snapshots keep the good fallback and the log it needs", async () => {
    const small = 2048; // segments of a few records, so compaction really deletes some
    let o = await open(new RecordingIo(), undefined, 1 << 30, small);
    const dir = o.dir;
    await setRange(o.d, o.replies, 0, 100);
    await o.d.snapshot(); // @100
    await setRange(o.d, o.replies, 100, 200);
    await o.d.snapshot(); // @200
    await o.d.close();
    flipBodyByte(join(dir, "snap", snapshotName(200)));

    o = await open(new RecordingIo(), dir, 1 << 30, small);
    expect(o.d.recovery.snapshotIndex).toBe(100);
    expect(readdirSync(join(dir, "snap")).sort()).toEqual([snapshotName(100), `${snapshotName(200)}.corrupt`]);
    for (let i = 200; i < 300; i++) o.d.propose(["SET", `k${i}`, `v${i}`], 1, `b${i}`);
    await settle(o.replies, 100);
    await o.d.snapshot(); // @300: the fallback is the good @100, and the log from 101 stays
    await o.d.close();
    expect(readdirSync(join(dir, "snap")).sort()).toEqual([snapshotName(100), `${snapshotName(200)}.corrupt`, snapshotName(300)]);

    // The new snapshot is damaged too: the good one at 100 plus the log still give everything.
    flipBodyByte(join(dir, "snap", snapshotName(300)));
    const again = await open(new RecordingIo(), dir, 1 << 30, small);
    expect(again.d.recovery.snapshotIndex).toBe(100);
    expect(again.d.applied).toBe(300);
    expect(again.d.fsm.db.dbsize()).toBe(300);
    for (let i = 0; i < 300; i++) expect(again.d.fsm.db.get(`k${i}`, 10)).toBe(`v${i}`);
    await again.d.close();
  });

  test("a corrupt snapshot past the end of the log does not reset the log: its body is checked before that decision", async () => {
    const { d, dir, replies } = await open(new RecordingIo());
    await setRange(d, replies, 0, 10);
    await d.snapshot();
    await setRange(d, replies, 10, 20);
    await d.close();
    // A newer snapshot at index 50 (beyond the log's last index 20), then damaged.
    await SnapshotStore.open(dir).write({ lastIndex: 50, lastTerm: 1, meta: new TextEncoder().encode("1") }, [["zz", "from-50", undefined]]);
    flipBodyByte(join(dir, "snap", snapshotName(50)));

    const again = await open(new RecordingIo(), dir);
    expect(again.d.recovery.snapshotIndex).toBe(10);
    expect(again.d.applied).toBe(20);
    for (let i = 0; i < 20; i++) expect(again.d.fsm.db.get(`k${i}`, 10)).toBe(`v${i}`);
    expect(again.d.fsm.db.get("zz", 10)).toBeUndefined();
    await again.d.close();
  });
});

/** Holds the first `holds` snapshot fsyncs until released (one release each); counts every snapshot started. */
function holdSnapshots(io: RecordingIo, holds = Infinity) {
  const waiting: (() => void)[] = [];
  const gate = {
    started: 0,
    release() {
      waiting.shift()?.();
    },
  };
  io.beforeDatasync = (path) => {
    if (!path?.includes("/snap/")) return;
    gate.started++;
    if (gate.started > holds) return;
    return new Promise<void>((r) => waiting.push(r));
  };
  return gate;
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await Bun.sleep(2);
  expect(cond()).toBe(true);
}

describe("DurableLog restart from a mapped snapshot (values stay in the file until used)", () => {
  test("values are served from the mapping; writes replace them; the next snapshot copies the rest and lets the file go", async () => {
    const { d, dir, replies } = await open(new RecordingIo());
    await setRange(d, replies, 0, 40);
    d.propose(["SET", "ttl", "t", "PXAT", "9000000000000"], 1, "t");
    await settle(replies, 41);
    await d.snapshot();
    await d.close();

    const io = new RecordingIo();
    const again = await open(io, dir);
    const db = again.d.fsm.db;
    expect(io.count("map")).toBe(1);
    expect(db.hasLazyValues()).toBe(true);
    expect(db.lazyRefCount()).toBe(41);
    expect(db.get("k0", 10)).toBe("v0");
    expect(db.lazyRefCount()).toBe(40); // a read keeps the string it made
    expect(db.expireAt("ttl")).toBe(9000000000000);
    again.d.propose(["SET", "k1", "new1"], 2, "b1");
    again.d.propose(["APPEND", "k2", "+"], 2, "b2");
    await settle(again.replies, 2);
    expect(db.get("k1", 10)).toBe("new1");
    expect(db.get("k2", 10)).toBe("v2+");
    expect(db.lazyRefCount()).toBe(38);

    await again.d.snapshot();
    expect(db.lazyRefCount()).toBe(0);
    expect(db.hasLazyValues()).toBe(false);
    for (let i = 3; i < 40; i++) expect(db.get(`k${i}`, 10)).toBe(`v${i}`);
    expect(db.get("ttl", 10)).toBe("t");
    await again.d.close();
  });

  test("replayed plain SETs keep their values in the mapped log; every other command replays as before; same state as read from files", async () => {
    const { d, dir, replies } = await open(new RecordingIo());
    const cmds: string[][] = [];
    for (let i = 0; i < 60; i++) cmds.push(["SET", `k${i % 25}`, `v${i}-${"x".repeat(i * 40)}`]);
    cmds.push(["set", "lower", "case"], ["SET", "px", "gone", "PX", "1"], ["SET", "n", "5"], ["INCR", "n"], ["APPEND", "k3", "+a"], ["DEL", "k4"]);
    cmds.push(["MSET", "m1", "a", "m2", "b"], ["SET", "k5", "\r\n\x00\xff"], ["GETSET", "k6", "gs"], ["SET", "k7", "old"], ["SET", "k7", "new"]);
    cmds.push(["SET", "ttl", "a", "PX", "100000"], ["SET", "ttl", "b"]); // a plain SET clears the TTL
    cmds.forEach((c, i) => d.propose(c, 1000 + i, `c${i}`));
    await settle(replies, cmds.length);
    expect(replies.size).toBe(cmds.length);
    const before = d.fsm.digest(5000);
    await d.close();

    const io = new RecordingIo();
    const mapped = await open(io, dir);
    const db = mapped.d.fsm.db;
    expect(mapped.d.recovery.replayedRecords).toBe(cmds.length);
    expect(io.count("map")).toBeGreaterThan(0);
    // Keys whose last write was a plain SET hold a ref: k0-k24 except k3 (APPEND), k4 (DEL)
    // and k6 (GETSET), plus "lower" and "ttl". The others hold strings.
    expect(db.lazyRefCount()).toBe(24);
    expect(db.expireAt("ttl")).toBeUndefined();
    expect(mapped.d.fsm.digest(5000)).toBe(before);
    expect(db.get("k3", 5000)).toBe(`v53-${"x".repeat(53 * 40)}+a`);
    expect(db.get("k5", 5000)).toBe("\r\n\x00\xff");
    expect(db.get("k7", 5000)).toBe("new");
    expect(db.get("lower", 5000)).toBe("case");
    expect(db.get("n", 5000)).toBe("6");
    expect(db.get("px", 5000)).toBeUndefined();
    await mapped.d.close();

    // The same data dir with no file mapped: the same state, no refs.
    const noMap = new RecordingIo();
    for (let i = 0; i < 10; i++) noMap.failNext("map", "ENODEV");
    const read = await open(noMap, dir);
    expect(read.d.fsm.db.hasLazyValues()).toBe(false);
    expect(read.d.fsm.digest(5000)).toBe(before);
    await read.d.close();
  });

  test("a snapshot file that cannot be mapped is read instead, with the same state", async () => {
    const { d, dir, replies } = await open(new RecordingIo());
    await setRange(d, replies, 0, 20);
    await d.snapshot();
    await d.close();
    const io = new RecordingIo();
    io.failNext("map", "ENODEV");
    const again = await open(io, dir);
    expect(again.d.fsm.db.hasLazyValues()).toBe(false);
    expect(again.d.recovery.snapshotEntries).toBe(20);
    for (let i = 0; i < 20; i++) expect(again.d.fsm.db.get(`k${i}`, 10)).toBe(`v${i}`);
    await again.d.close();
  });
});

describe("DurableLog: expiry times past 2^53 ms", () => {
  test("survive a snapshot and a restart exactly (read mapped and read from the file)", async () => {
    const { d, dir, replies } = await open(new RecordingIo());
    d.propose(["SET", "big", "v", "PXAT", "9223372036854775807"], 1, "a");
    d.propose(["SET", "odd", "v", "PXAT", "9007199254740993"], 1, "b");
    d.propose(["SET", "small", "v", "PXAT", "9007199254740991"], 1, "c");
    await settle(replies, 3);
    await d.snapshot();
    await d.close();
    for (const mapped of [true, false]) {
      const io = new RecordingIo();
      if (!mapped) for (let i = 0; i < 10; i++) io.failNext("map", "ENODEV");
      const again = await open(io, dir);
      const db = again.d.fsm.db;
      expect(again.d.recovery.snapshotEntries).toBe(3);
      expect(db.expireAt("big")).toBe(9223372036854775807n);
      expect(db.expireAt("odd")).toBe(9007199254740993n);
      expect(db.expireAt("small")).toBe(9007199254740991);
      db.assertInvariants();
      await again.d.close();
    }
  });
});
