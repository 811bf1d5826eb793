// RaftLog (Raft storage on the WAL) against MemoryStorage, the model: seeded random sequences of
// persists (appends, conflicting suffixes, hard states, snapshot installs), compactions and
// restarts; after every step and every reopen the two must answer alike. Then power cuts at
// every fsync of a scripted sequence (PowerCutIo): every resolved persist is whole after
// recovery, a hard state is never newer than the entries persisted with it, nothing in between.
//
// KV_RAFTLOG_SEEDS=<n> runs more seeds; KV_RAFTLOG_SEED=<s> replays one.
import { expect, test } from "bun:test";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MemoryStorage } from "../../src/raft/storage.ts";
import type { ConfState, Entry, HardState, Snapshot, SnapshotMeta } from "../../src/raft/types.ts";
import { setLogLevel } from "../../src/log.ts";
import { type DiskImage, PowerCutIo } from "../../src/storage/power-cut.ts";
import { RaftLog } from "../../src/storage/raft-log.ts";
import type { StorageIo } from "../../src/storage/io.ts";
import { prng } from "../helpers/prng.ts";
import { tempDirs } from "../helpers/tmp.ts";

setLogLevel("error");
const tempDir = tempDirs("kv-raftlog-");

/** Tiny segments, so rolls, whole-segment compaction and hard states heading a segment all happen. */
const SEGMENT_BYTES = 400;

type Persist = { hardState: HardState | undefined; entries: Entry[]; snapshot: Snapshot | undefined };
type Step = { kind: "persist"; p: Persist } | { kind: "compact"; meta: SnapshotMeta } | { kind: "restart" };

/** What both storages must agree on, in a form toEqual compares (data as hex). */
function view(s: MemoryStorage | RaftLog) {
  const first = s.firstIndex();
  const last = s.lastIndex();
  const terms: (number | undefined)[] = [];
  for (let i = Math.max(0, first - 2); i <= last + 1; i++) terms.push(s.term(i));
  const ents = first <= last ? s.entries(first, last + 1, Number.MAX_SAFE_INTEGER) : [];
  return {
    first,
    last,
    terms,
    entries: ents.map((e) => `${e.index}/${e.term}/${e.type}/${Buffer.from(e.data).toString("hex")}`),
    initial: s.initialState(),
    snap: s.snapshot().meta,
  };
}

/** Generates the next step from the model's state, as Raft would drive its storage. */
class Gen {
  private term = 1;
  private members: ConfState = { voters: [1, 2, 3], learners: [] };
  constructor(
    private readonly rand: () => number,
    private readonly model: MemoryStorage,
  ) {}

  private int(n: number): number {
    return Math.floor(this.rand() * n);
  }

  private entry(index: number, term: number): Entry {
    const r = this.rand();
    const len = r < 0.1 ? 0 : r < 0.9 ? 1 + this.int(40) : 100 + this.int(200);
    const data = new Uint8Array(len);
    for (let i = 0; i < len; i++) data[i] = this.int(256);
    return { index, term, type: this.rand() < 0.1 ? "conf-change" : "normal", data };
  }

  next(): Step {
    const m = this.model;
    const hs = m.getHardState();
    const r = this.rand();
    if (r < 0.05) return { kind: "restart" };
    if (r < 0.12) {
      const lo = m.firstIndex();
      const hi = Math.min(hs.commit, m.lastIndex());
      if (hi >= lo) {
        const index = lo + this.int(hi - lo + 1);
        return { kind: "compact", meta: { index, term: m.term(index)!, confState: this.members } };
      }
    }
    if (this.rand() < 0.15) this.term += 1 + this.int(2);
    let snapshot: Snapshot | undefined;
    let base = m.lastIndex();
    let baseTerm = m.term(base) ?? 0;
    let commit = hs.commit;
    if (r > 0.96) {
      // A snapshot from the leader: past our commit, maybe past our whole log.
      const index = Math.max(commit, m.snapshot().meta.index) + 1 + this.int(8);
      const term = Math.max(baseTerm, m.term(index) ?? 0, 1) + this.int(2);
      this.term = Math.max(this.term, term);
      this.members = this.rand() < 0.5 ? { voters: [1, 2, 3], learners: [4] } : { voters: [1, 2, 5], learners: [] };
      snapshot = { meta: { index, term, confState: this.members }, data: new Uint8Array(0) };
      base = index;
      baseTerm = term;
      commit = index;
    } else if (this.rand() < 0.2 && m.lastIndex() > Math.max(commit, m.firstIndex() - 1)) {
      // A conflicting suffix: rewrite from somewhere after the commit.
      const from = Math.max(commit, m.firstIndex() - 1) + 1 + this.int(m.lastIndex() - Math.max(commit, m.firstIndex() - 1));
      base = from - 1;
      baseTerm = m.term(base) ?? 0;
    }
    const entries: Entry[] = [];
    const n = this.rand() < 0.25 ? 0 : 1 + this.int(5);
    let t = baseTerm;
    for (let i = 0; i < n; i++) {
      if (this.rand() < 0.2) t = Math.min(this.term, t + 1);
      t = Math.max(t, Math.min(this.term, baseTerm));
      entries.push(this.entry(base + 1 + i, Math.min(this.term, Math.max(t, 1))));
    }
    const last = base + n;
    let hardState: HardState | undefined;
    if (this.rand() < 0.7 || snapshot !== undefined) {
      const termNow = Math.max(this.term, hs.term);
      const vote = termNow === hs.term && hs.vote !== 0 ? hs.vote : this.rand() < 0.5 ? 0 : 1 + this.int(3);
      const newCommit = Math.max(commit, Math.min(last, commit + this.int(4)));
      hardState = { term: termNow, vote, commit: newCommit };
    }
    return { kind: "persist", p: { hardState, entries, snapshot } };
  }
}

/** Writes the snapshot file a compaction or an install needs (the runtime's job), then applies the step to both. */
async function apply(step: Step, model: MemoryStorage, log: RaftLog): Promise<void> {
  if (step.kind === "compact") {
    await log.snapshots.write({ lastIndex: step.meta.index, lastTerm: step.meta.term, membership: step.meta.confState }, []);
    await log.compact(step.meta);
    model.createSnapshot(step.meta.index, step.meta.confState, new Uint8Array(0));
  } else if (step.kind === "persist") {
    const { p } = step;
    if (p.snapshot !== undefined) await log.snapshots.write({ lastIndex: p.snapshot.meta.index, lastTerm: p.snapshot.meta.term, membership: p.snapshot.meta.confState }, []);
    await log.persist(p);
    if (p.snapshot !== undefined) model.applySnapshot(p.snapshot);
    model.append(p.entries);
    if (p.hardState !== undefined) model.setHardState(p.hardState);
  }
}

function open(dir: string, io?: StorageIo): Promise<RaftLog> {
  return RaftLog.open({ dataDir: dir, segmentBytesMax: SEGMENT_BYTES, io });
}

/** What a run exercised (so a generator change cannot quietly stop covering a path). */
const seen = { truncations: 0, installs: 0, compactions: 0, restarts: 0, hardStateOnly: 0, sideFile: 0, segmentsDropped: 0 };

async function modelRun(seed: number, steps: number): Promise<void> {
  const dir = tempDir();
  const rand = prng(seed);
  const model = new MemoryStorage();
  const gen = new Gen(rand, model);
  let log = await open(dir);
  let i = 0;
  try {
    for (; i < steps; i++) {
      const step = gen.next();
      const segments = log.log.segmentNames()[0];
      if (step.kind === "restart") {
        seen.restarts++;
        await log.close();
        log = await open(dir);
      } else {
        if (step.kind === "compact") seen.compactions++;
        else if (step.p.snapshot !== undefined) seen.installs++;
        else if (step.p.entries.length > 0 && step.p.entries[0]!.index <= model.lastIndex()) seen.truncations++;
        else if (step.p.entries.length === 0 && step.p.hardState !== undefined) seen.hardStateOnly++;
        await apply(step, model, log);
      }
      if (log.log.segmentNames()[0] !== segments) seen.segmentsDropped++;
      if (existsSync(join(dir, "hardstate"))) seen.sideFile++;
      expect(view(log)).toEqual(view(model));
      // A bounded read cuts where the model cuts.
      if (model.lastIndex() >= model.firstIndex()) {
        const maxBytes = Math.floor(rand() * 300);
        const lo = model.firstIndex();
        expect(log.entries(lo, model.lastIndex() + 1, maxBytes).map((e) => e.index)).toEqual(model.entries(lo, model.lastIndex() + 1, maxBytes).map((e) => e.index));
      }
    }
    await log.close();
    log = await open(dir);
    expect(view(log)).toEqual(view(model));
  } catch (e) {
    throw new Error(`seed ${seed} (KV_RAFTLOG_SEED=${seed}), step ${i}: ${(e as Error).message}`);
  } finally {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const seeds = process.env.KV_RAFTLOG_SEED ? [Number(process.env.KV_RAFTLOG_SEED)] : Array.from({ length: Number(process.env.KV_RAFTLOG_SEEDS ?? 6) }, (_, i) => 1 + i);

test("RaftLog answers as MemoryStorage after every persist, compaction and restart (seeded)", async () => {
  for (const seed of seeds) await modelRun(seed, 250);
  console.log(`raft-log model run: ${JSON.stringify(seen)}`);
  if (!process.env.KV_RAFTLOG_SEED) for (const [what, n] of Object.entries(seen)) expect(n, what).toBeGreaterThan(0);
}, 60_000);

// ------------------------------------------------------------------------------------ power cuts

type State = ReturnType<typeof view>;
interface Cut {
  at: string;
  /** The state before the step in progress and after it (equal when none is in progress). */
  before: State;
  after: State;
  /** The step in progress: a persist (with where its new entries start) or a compaction. */
  step: Step | undefined;
  image: DiskImage;
}

function materialize(image: DiskImage): string {
  const dir = tempDir();
  for (const d of image.dirs) mkdirSync(join(dir, d));
  for (const [path, bytes] of image.files) writeFileSync(join(dir, path), bytes);
  return dir;
}

/** Why `got` is not a state a power cut during `cut.step` may leave (undefined: it may). */
function judge(got: State, cut: Cut): string | undefined {
  const { before, after, step } = cut;
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (same(got, before) || same(got, after)) return undefined;
  if (step === undefined) return "the state is neither the one before nor after the last resolved step";
  if (!same(got.initial.hardState, before.initial.hardState)) {
    return same(got.initial.hardState, after.initial.hardState)
      ? "the new hard state survived without all the entries persisted with it"
      : `hard state ${JSON.stringify(got.initial.hardState)} is neither the old nor the new one`;
  }
  // Old hard state, entries of the step in progress partly there: a prefix of the new log that
  // keeps everything the step did not rewrite, or (a truncation cut short) a prefix of the old log.
  const isPrefix = (part: string[], of: string[]) => part.length <= of.length && part.every((e, i) => e === of[i]);
  if (step.kind === "persist") {
    const p = step.p;
    const keep = p.entries.length > 0 ? p.entries[0]!.index - 1 : before.last;
    const snapMoved = !same(got.snap, before.snap);
    if (snapMoved && !same(got.snap, after.snap)) return "a snapshot that is neither the old nor the new one";
    const base = snapMoved ? after : before;
    const kept = base.entries.filter((e) => Number(e.split("/")[0]) <= keep);
    if (!snapMoved && isPrefix(got.entries, before.entries) && got.entries.length >= kept.length) return undefined;
    if (isPrefix(got.entries, after.entries) && got.entries.length >= (snapMoved ? 0 : kept.length)) return undefined;
    // A snapshot file durable before the log was reset, where the old log has the snapshot's
    // index and term (the same history, by Raft's log matching): the old suffix may stay.
    const matches = before.entries.some((e) => e.startsWith(`${after.snap.index}/${after.snap.term}/`));
    if (snapMoved && matches && got.entries.every((e) => before.entries.includes(e))) return undefined;
    return "the log is not the old one, the new one, or the new one cut short (entries lost or out of place)";
  }
  return "a compaction left a state that is neither the one before nor after it";
}

async function powerCutRun(seed: number, steps: number): Promise<number> {
  const dir = tempDir();
  const rand = prng(seed);
  const cutRand = prng(seed * 7 + 3);
  const io = new PowerCutIo(dir, prng(seed * 13 + 5));
  const model = new MemoryStorage();
  const gen = new Gen(rand, model);
  const cuts: Cut[] = [];
  let before = view(model);
  let inProgress: Step | undefined;
  let log = await open(dir, io);
  io.onPoint = (p) => {
    if (p.kind !== "sync" && cutRand() >= 0.2) return;
    cuts.push({ at: `${p.kind} #${p.syncs} of ${p.path.slice(dir.length)}`, before, after: before, step: inProgress, image: io.image(cutRand) });
  };
  for (let i = 0; i < steps; i++) {
    const step = gen.next();
    if (step.kind === "restart") continue;
    const mark = cuts.length;
    inProgress = step;
    // The state after the step, computed on a copy of the model first.
    await apply(step, model, log);
    const after = view(model);
    for (let k = mark; k < cuts.length; k++) cuts[k]!.after = after;
    before = after;
    inProgress = undefined;
  }
  await log.close();
  io.onPoint = null;
  cuts.push({ at: "after a clean close", before, after: before, step: undefined, image: io.image(cutRand) });
  for (const cut of cuts) {
    const d = materialize(cut.image);
    let got: State;
    try {
      const l = await open(d, new PowerCutIo(d, () => 0));
      got = view(l);
      await l.close();
    } catch (e) {
      throw new Error(`seed ${seed}, cut after ${cut.at}: recovery failed: ${(e as Error).stack}`);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
    const why = judge(got, cut);
    if (why !== undefined) {
      throw new Error(`seed ${seed} (KV_RAFTLOG_SEED=${seed}), cut after ${cut.at}: ${why}\ngot ${JSON.stringify(got)}\nbefore ${JSON.stringify(cut.before)}\nafter ${JSON.stringify(cut.after)}`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  return cuts.length;
}

test("power cuts at every fsync: resolved persists are whole, a hard state never outruns its entries (seeded)", async () => {
  let points = 0;
  for (const seed of process.env.KV_RAFTLOG_SEEDS || process.env.KV_RAFTLOG_SEED ? seeds : seeds.slice(0, 4)) points += await powerCutRun(seed, 60);
  expect(points).toBeGreaterThan(100);
}, 60_000);

test("a truncation at or below the durable commit, or a compaction past it, is a broken invariant (assert)", async () => {
  const { AssertionError } = await import("../../src/errors.ts");
  const dir = tempDir();
  const log = await open(dir);
  const e = (index: number, term: number): Entry => ({ index, term, type: "normal", data: new Uint8Array([index]) });
  await log.persist({ hardState: { term: 2, vote: 1, commit: 3 }, entries: [e(1, 1), e(2, 1), e(3, 2), e(4, 2)], snapshot: undefined });
  // Rewriting index 3 would drop a committed entry (maybe applied, its value mapped from the segment).
  await expect(log.persist({ hardState: undefined, entries: [e(3, 3)], snapshot: undefined })).rejects.toBeInstanceOf(AssertionError);
  await log.close();
  const again = await open(dir);
  expect(again.lastIndex()).toBe(4); // nothing was cut
  // Rewriting index 4 (uncommitted) is fine.
  await again.persist({ hardState: { term: 3, vote: 0, commit: 3 }, entries: [e(4, 3)], snapshot: undefined });
  expect(again.term(4)).toBe(3);
  await again.snapshots.write({ lastIndex: 4, lastTerm: 3 }, []);
  await expect(again.compact({ index: 4, term: 3, confState: { voters: [1], learners: [] } })).rejects.toBeInstanceOf(AssertionError);
  await again.close();
});

test("a hard-state-only persist on an empty log, then entries: one segment, and the newest hard state wins on open", async () => {
  const dir = tempDir();
  let log = await open(dir);
  await log.persist({ hardState: { term: 1, vote: 1, commit: 0 }, entries: [], snapshot: undefined });
  await log.persist({ hardState: { term: 2, vote: 0, commit: 0 }, entries: [], snapshot: undefined });
  expect(log.log.segmentNames()).toEqual(["00000000000000000001.seg"]);
  const fsyncs = log.log.stats.fsyncs;
  await log.persist({ hardState: { term: 2, vote: 3, commit: 1 }, entries: [{ index: 1, term: 2, type: "conf-change", data: new Uint8Array([1, 0, 0, 0, 1]) }], snapshot: undefined });
  expect(log.log.stats.fsyncs - fsyncs).toBe(1); // entries and hard state: one fdatasync
  await log.close();
  log = await open(dir);
  expect(log.initialState().hardState).toEqual({ term: 2, vote: 3, commit: 1 });
  expect(log.entries(1, 2, 100)[0]!.type).toBe("conf-change");
  await log.close();
});

test("a log holding only hard states after an installed snapshot keeps the snapshot's term across restarts", async () => {
  // A restored data dir (kv restore), or a follower's install followed by nothing but votes: the
  // WAL's records after its base are all hard states, whose term field is the snapshot's term.
  const dir = tempDir();
  const conf: ConfState = { voters: [1, 2, 3], learners: [] };
  const meta: SnapshotMeta = { index: 214, term: 5, confState: conf };
  let log = await open(dir);
  await log.snapshots.write({ lastIndex: 214, lastTerm: 5, membership: conf }, []);
  await log.persist({ hardState: { term: 5, vote: 0, commit: 214 }, entries: [], snapshot: { meta, data: new Uint8Array(0) } });
  await log.close();
  log = await open(dir);
  await log.persist({ hardState: { term: 6, vote: 2, commit: 214 }, entries: [], snapshot: undefined });
  await log.close();
  log = await open(dir); // refused before ("term 0 ... is below the previous term 5")
  expect(log.initialState().hardState).toEqual({ term: 6, vote: 2, commit: 214 });
  await log.persist({ hardState: { term: 6, vote: 2, commit: 215 }, entries: [{ index: 215, term: 6, type: "normal", data: new Uint8Array([1]) }], snapshot: undefined });
  await log.close();
  log = await open(dir);
  expect(log.lastIndex()).toBe(215);
  expect(log.term(214)).toBe(5);
  expect(log.term(215)).toBe(6);
  await log.close();
});
