// The one-member Raft group (`kv serve` without --cluster) in process, with a recording file
// layer: a reply is produced only after the fsync that covers its write; a storage failure stops
// the node with the outcome of what was in flight unknown; expirations are logged behind the
// writes before them; snapshots wait for one another and follow the log's growth; recovery falls
// back from a damaged newest snapshot.
import { describe, expect, test } from "bun:test";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterError, ClusterNode } from "../../src/node/cluster-node.ts";
import { RecordingIo, SnapshotStore, snapshotName, type StorageIo } from "../../src/storage/index.ts";
import { collectReplies, openOneMember } from "../helpers/one-member.ts";
import { tempDirs } from "../helpers/tmp.ts";

const tempDir = tempDirs("kv-one-member-");

/** A failed write's reply text (UNCERTAIN ...), or the error's name for any other error. */
const failedReply = (e: Error) => (e as ClusterError).reply ?? e.name;

async function open(io: StorageIo, dataDir?: string, snapshotLogBytes = 1 << 30, segmentBytesMax = 1 << 20) {
  const dir = dataDir ?? tempDir();
  const { node: d, fatal } = await openOneMember<string>({ dataDir: dir, snapshotLogBytes, segmentBytesMax, io });
  const replies = collectReplies(d, { failed: failedReply, onApplied: (owner) => (io as RecordingIo).note?.("ack", owner) });
  return { d, dir, replies, fatal };
}

async function settle(replies: Map<string, string>, n: number): Promise<void> {
  for (let i = 0; i < 500 && replies.size < n; i++) await Bun.sleep(2);
}

/** Proposes SET k<i> v<i> for i in [from, to) and waits for every reply so far (to in all). */
async function setRange(d: ClusterNode<string>, replies: Map<string, string>, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) d.propose(["SET", `k${i}`, `v${i}`], 1, `a${i}`);
  await settle(replies, to);
  expect(replies.size).toBe(to);
}

describe("a one-member group", () => {
  test("every reply is produced after a datasync that follows the write carrying its entry; a restart has every write", async () => {
    const io = new RecordingIo();
    io.syncDelayMs = 3; // slow disk: later proposals pile up into group commits
    const { d, dir, replies, fatal } = await open(io);
    const acksBefore = io.count("ack");
    const eventsBefore = io.events.length;
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
    for (const e of io.events.slice(eventsBefore)) {
      if (e.op === "write" && e.path?.includes("/wal/")) writesSinceSync++;
      else if (e.op === "datasync" && e.path?.includes("/wal/")) {
        synced += writesSinceSync;
        writesSinceSync = 0;
      } else if (e.op === "ack") {
        acks++;
        expect(synced).toBeGreaterThan(0);
      }
    }
    expect(acksBefore).toBe(0);
    expect(acks).toBe(50);
    // Group commit: fewer fsyncs than writes.
    expect(d.walStats.fsyncs).toBeLessThan(50);
    await d.close();
    expect(fatal).toEqual([]);

    // Replay gives the same state.
    const again = await open(new RecordingIo(), dir);
    expect(again.d.fsm.db.dbsize()).toBe(50);
    for (let i = 0; i < 50; i++) expect(again.d.fsm.db.get(`k${i}`, 0)).toBe(`v${i}`);
    expect(again.d.changesSinceSnapshot).toBe(50);
    await again.d.close();
  });

  test("an expiration swept while a write is waiting for its fsync is logged behind it: the write sees the key live; replay agrees", async () => {
    const io = new RecordingIo();
    const { d, dir, replies } = await open(io);
    const t = 1_700_000_000_000;
    d.propose(["SET", "k", "old", "PXAT", String(t + 100)], t, "w1");
    await settle(replies, 1);
    io.syncDelayMs = 30; // the next write waits for its fsync while the sweep runs
    d.propose(["SET", "k", "new", "NX"], t + 99, "w2"); // k is live at t+99: NX must fail
    d.propose(["GET", "k"], t + 99, "r2");
    await Bun.sleep(5);
    // The sweep fires at t+100, while w2 is still in flight: k's deletion is proposed behind w2 and r2.
    expect(d.sweepExpired(t + 100, 100)).toBe(1);
    expect(d.sweepExpired(t + 100, 100)).toBe(0); // one expiration entry in flight at a time
    expect(d.fsm.db.dbsize()).toBe(1);
    await settle(replies, 3);
    expect(replies.get("w2")).toBe("$-1\r\n");
    expect(replies.get("r2")).toBe("$3\r\nold\r\n");
    io.syncDelayMs = 0;
    for (let i = 0; i < 500 && d.fsm.db.dbsize() > 0; i++) await Bun.sleep(2);
    expect(d.fsm.db.dbsize()).toBe(0);
    expect(d.raftSm.keysExpired).toBe(1);
    // A write stamped earlier than the sweep runs no earlier than it: k is gone for it.
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

  /** Waits until the log is idle: the commit index a tick writes alone is written, so the next log write is a batch's. */
  async function idle(d: Awaited<ReturnType<typeof open>>["d"]): Promise<void> {
    for (let i = 0; i < 500 && (d.node.persistInFlight || d.node.status().commit !== d.applied); i++) await Bun.sleep(2);
    await Bun.sleep(60); // past a tick, whose hard-state write would otherwise take the injected fault
  }

  test("a failed fsync: that write's outcome is unknown, later writes are refused, reads go on, what was acknowledged survives", async () => {
    const io = new RecordingIo();
    const { d, dir, replies, fatal } = await open(io);
    d.propose(["SET", "a", "1"], 1, "ok");
    await settle(replies, 1);
    expect(replies.get("ok")).toBe("+OK\r\n");
    await idle(d);
    io.failNext("datasync", "EIO", { pathIncludes: "/wal/" });
    d.propose(["SET", "b", "2"], 2, "unknown");
    await settle(replies, 2);
    expect(replies.get("unknown")).toStartWith("UNCERTAIN write outcome unknown: ");
    // The only voter does not stop: nothing can commit any more, so its state stays the latest.
    expect(fatal).toEqual([]);
    expect(d.storageFailed?.code).toBe("EIO");
    d.propose(["SET", "c", "3"], 3, "after");
    await settle(replies, 3);
    expect(replies.get("after")).toBe("WalFailedError"); // the server answers it MISCONF
    expect(d.fsm.db.get("b", 10)).toBeUndefined();
    expect(d.fsm.db.get("c", 10)).toBeUndefined();
    expect(d.fsm.db.get("a", 10)).toBe("1");
    expect(d.readsLocal()).toBe(true);
    await d.close().catch(() => {});
    const again = await open(new RecordingIo(), dir);
    expect(again.d.fsm.db.get("a", 10)).toBe("1");
    expect(again.d.fsm.db.get("c", 10)).toBeUndefined();
    await again.d.close();
  });

  test("a full disk (ENOSPC on write): the write's outcome is unknown, the node keeps reads, what was acknowledged survives a restart", async () => {
    const io = new RecordingIo();
    const { d, dir, replies, fatal } = await open(io);
    d.propose(["SET", "kept", "yes"], 1, "ok");
    await settle(replies, 1);
    await idle(d);
    io.failNext("write", "ENOSPC", { pathIncludes: "/wal/" });
    d.propose(["SET", "lost", "?"], 2, "full");
    await settle(replies, 2);
    expect(replies.get("full")).toStartWith("UNCERTAIN ");
    expect(fatal).toEqual([]);
    expect(d.storageFailed?.code).toBe("ENOSPC");
    expect(d.fsm.db.get("kept", 10)).toBe("yes");
    await d.close().catch(() => {});
    const again = await open(new RecordingIo(), dir);
    expect(again.d.fsm.db.get("kept", 10)).toBe("yes");
    await again.d.close();
  });

  test("a snapshot requested while an older one is being written waits for it, then covers every write before the request", async () => {
    const io = new RecordingIo();
    const { d, dir, replies } = await open(io);
    const base = d.applied; // the group's own entries: its first membership, its leader's no-op
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
    const third = d.snapshot(); // nothing applied after the second: it writes nothing new
    await Bun.sleep(20);
    expect(holding).toBe(1); // the second did not start while the first runs
    release();
    const [s1, s2, s3] = await Promise.all([first, second, third]);
    expect(s1.lastIndex).toBe(base + 10);
    expect(s2.lastIndex).toBe(base + 15);
    expect(s3.lastIndex).toBe(base + 15);
    expect(holding).toBe(2); // exactly one more snapshot was written for the second and third
    expect(d.changesSinceSnapshot).toBe(0);
    await d.close();
    const again = await open(new RecordingIo(), dir);
    expect(again.d.recovery.snapshotIndex).toBe(base + 15);
    expect(again.d.recovery.snapshotEntries).toBe(15);
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
    expect(d.lastSnapshot!.lastIndex).toBe(d.applied);
    await d.close();
    const again = await open(new RecordingIo(), dir);
    expect(again.d.recovery.snapshotIndex).toBe(d.applied);
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
    expect(after).toBeGreaterThan(0);
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
    expect((await first).lastIndex).toBe(d.applied - 1);
    await expect(save).rejects.toThrow("shutting down");
    await closed;
    expect(gate.started).toBe(1);
    const again = await open(new RecordingIo(), dir);
    expect(again.d.recovery.snapshotIndex).toBe(d.applied - 1);
    expect(again.d.fsm.db.get("b", 10)).toBe("2");
    await again.d.close();
  });
});

describe("recovery with a corrupt newest snapshot", () => {
  function flipBodyByte(path: string): void {
    const b = readFileSync(path);
    b[b.length - 3]! ^= 0x10;
    writeFileSync(path, b);
  }

  test("the older snapshot plus the log give the full state", async () => {
    const { d, dir, replies } = await open(new RecordingIo());
    for (let i = 0; i < 30; i++) d.propose(["SET", `k${i}`, `old${i}`], 1, `a${i}`);
    await settle(replies, 30);
    const older = (await d.snapshot()).lastIndex;
    for (let i = 0; i < 30; i++) d.propose(["SET", `k${i}`, `new${i}`], 2, `b${i}`);
    d.propose(["SET", "only-new", "x"], 2, "c");
    await settle(replies, 61);
    expect(replies.size).toBe(61);
    await d.snapshot();
    const applied = d.applied;
    await d.close();
    const snaps = readdirSync(join(dir, "snap")).filter((f) => f.endsWith(".snap")).sort();
    expect(snaps.length).toBe(2);
    flipBodyByte(join(dir, "snap", snaps[1]!));

    const again = await open(new RecordingIo(), dir);
    expect(again.d.recovery.snapshotIndex).toBe(older);
    expect(again.d.applied).toBeGreaterThanOrEqual(applied);
    for (let i = 0; i < 30; i++) expect(again.d.fsm.db.get(`k${i}`, 10)).toBe(`new${i}`);
    expect(again.d.fsm.db.get("only-new", 10)).toBe("x");
    expect(again.d.fsm.db.dbsize()).toBe(31);
    await again.d.close();
  });

  test("the next snapshots keep the good fallback and the log it needs", async () => {
    const small = 2048; // segments of a few records, so compaction really deletes some
    let o = await open(new RecordingIo(), undefined, 1 << 30, small);
    const dir = o.dir;
    await setRange(o.d, o.replies, 0, 100);
    const at100 = (await o.d.snapshot()).lastIndex;
    await setRange(o.d, o.replies, 100, 200);
    const at200 = (await o.d.snapshot()).lastIndex;
    await o.d.close();
    flipBodyByte(join(dir, "snap", snapshotName(at200)));

    o = await open(new RecordingIo(), dir, 1 << 30, small);
    expect(o.d.recovery.snapshotIndex).toBe(at100);
    expect(readdirSync(join(dir, "snap")).sort()).toEqual([snapshotName(at100), `${snapshotName(at200)}.corrupt`]);
    for (let i = 200; i < 300; i++) o.d.propose(["SET", `k${i}`, `v${i}`], 1, `b${i}`);
    await settle(o.replies, 100);
    const at300 = (await o.d.snapshot()).lastIndex; // the fallback is the good one at100, and the log after it stays
    await o.d.close();
    expect(readdirSync(join(dir, "snap")).sort()).toEqual([snapshotName(at100), `${snapshotName(at200)}.corrupt`, snapshotName(at300)]);

    // The new snapshot is damaged too: the good one plus the log still give everything.
    flipBodyByte(join(dir, "snap", snapshotName(at300)));
    const again = await open(new RecordingIo(), dir, 1 << 30, small);
    expect(again.d.recovery.snapshotIndex).toBe(at100);
    expect(again.d.fsm.db.dbsize()).toBe(300);
    for (let i = 0; i < 300; i++) expect(again.d.fsm.db.get(`k${i}`, 10)).toBe(`v${i}`);
    await again.d.close();
  });
});

describe("recovery with a corrupt snapshot past the end of the log", () => {
  test("the log is not reset: the snapshot's body is checked before that decision", async () => {
    const { d, dir, replies } = await open(new RecordingIo());
    await setRange(d, replies, 0, 10);
    const good = (await d.snapshot()).lastIndex;
    await setRange(d, replies, 10, 20);
    const last = d.applied;
    await d.close();
    // A newer snapshot at index 50 (beyond the log's last index), then damaged.
    await SnapshotStore.open(dir).write({ lastIndex: last + 30, lastTerm: 9, meta: new TextEncoder().encode("1"), membership: { voters: [1], learners: [] } }, [["zz", "from-50", undefined]]);
    flipByte(join(dir, "snap", snapshotName(last + 30)));

    const again = await open(new RecordingIo(), dir);
    expect(again.d.recovery.snapshotIndex).toBe(good);
    expect(again.d.applied).toBeGreaterThan(last);
    for (let i = 0; i < 20; i++) expect(again.d.fsm.db.get(`k${i}`, 10)).toBe(`v${i}`);
    expect(again.d.fsm.db.get("zz", 10)).toBeUndefined();
    await again.d.close();
  });
});

function flipByte(path: string): void {
  const b = readFileSync(path);
  b[b.length - 3]! ^= 0x10;
  writeFileSync(path, b);
}

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

describe("expiry times past 2^53 ms", () => {
  test("survive a snapshot and a restart exactly", async () => {
    const { d, dir, replies } = await open(new RecordingIo());
    d.propose(["SET", "big", "v", "PXAT", "9223372036854775807"], 1, "a");
    d.propose(["SET", "odd", "v", "PXAT", "9007199254740993"], 1, "b");
    d.propose(["SET", "small", "v", "PXAT", "9007199254740991"], 1, "c");
    await settle(replies, 3);
    await d.snapshot();
    await d.close();
    const again = await open(new RecordingIo(), dir);
    const db = again.d.fsm.db;
    expect(again.d.recovery.snapshotEntries).toBe(3);
    expect(db.expireAt("big")).toBe(9223372036854775807n);
    expect(db.expireAt("odd")).toBe(9007199254740993n);
    expect(db.expireAt("small")).toBe(9007199254740991);
    db.assertInvariants();
    await again.d.close();
  });
});
