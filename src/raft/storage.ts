// The read side of durable Raft state (LogStorage) and its in-memory twin (MemoryStorage).
import { assert } from "../errors.ts";
import type { ConfState, Entry, HardState, Snapshot, SnapshotMeta } from "./types.ts";
import { NONE, encodeConfChange } from "./types.ts";

/**
 * What Raft reads from stable storage. Raft never writes through it: the runtime persists each Ready
 * (a WAL-backed implementation appends records {index, term, type, data}) and Raft reads back.
 * Index 0 / term 0 is the empty log; firstIndex() - 1 is the index covered by the latest snapshot.
 */
export interface LogStorage {
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries [lo, hi), lo >= firstIndex(), hi <= lastIndex() + 1, cut after maxBytes (at least one). */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of entry i for firstIndex()-1 <= i <= lastIndex(); undefined otherwise (compacted / absent). */
  term(i: number): number | undefined;
  firstIndex(): number;
  lastIndex(): number;
  /** The most recent snapshot (meta.index === firstIndex() - 1). */
  snapshot(): Snapshot;
}

/**
 * The write side the runtime (src/node) uses to persist a Ready, implemented on the WAL
 * (src/storage) and in memory (for the simulator). Ordering rules are those of `Ready`: the
 * snapshot is installed first, then entries (dropping any stored suffix from entries[0].index on),
 * and the hard state; all of it durable together (one fsync) when `persist` resolves. Nothing of a
 * Ready may be sent before it resolves. After a crash, storage holds each earlier persist whole and
 * the one in progress whole or not at all, or (entries only) a prefix of it, never a gap.
 */
export interface RaftStorage extends LogStorage {
  persist(p: { hardState: HardState | undefined; entries: readonly Entry[]; snapshot: Snapshot | undefined }): Promise<void>;
  /**
   * A snapshot of the state machine at `index` (<= applied, so committed) is durable elsewhere:
   * record its metadata and drop log entries up to `index` (never past what was applied).
   */
  compact(meta: SnapshotMeta): Promise<void>;
  close(): Promise<void>;
}

/** Approximate wire size of an entry, used for message size limits. */
export function entryBytes(e: Entry): number {
  return e.data.length + 24;
}

const EMPTY_CONF: ConfState = { voters: [], learners: [] };

export class MemoryStorage implements LogStorage {
  private hardState: HardState = { term: 0, vote: NONE, commit: 0 };
  private snap: Snapshot = { meta: { index: 0, term: 0, confState: EMPTY_CONF }, data: new Uint8Array(0) };
  /** ents[i] has index snap.meta.index + 1 + i. */
  private ents: Entry[] = [];

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hardState, confState: this.snap.meta.confState };
  }

  /** The last persisted hard state (for tests and the simulator's checkers). */
  getHardState(): HardState {
    return this.hardState;
  }

  setHardState(hs: HardState): void {
    this.hardState = hs;
  }

  private get offset(): number {
    return this.snap.meta.index + 1;
  }

  firstIndex(): number {
    return this.offset;
  }

  lastIndex(): number {
    return this.snap.meta.index + this.ents.length;
  }

  term(i: number): number | undefined {
    if (i === this.snap.meta.index) return this.snap.meta.term;
    if (i < this.offset || i > this.lastIndex()) return undefined;
    return (this.ents[i - this.offset] as Entry).term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    assert(lo >= this.offset, `entries(${lo}) below first index ${this.offset}`);
    assert(hi <= this.lastIndex() + 1, `entries(..${hi}) past last index ${this.lastIndex()}`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - this.offset] as Entry;
      bytes += entryBytes(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** Every entry still stored (after the snapshot), for checkers. */
  allEntries(): readonly Entry[] {
    return this.ents;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Persist entries from a Ready: drops any stored suffix from entries[0].index on. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = (entries[0] as Entry).index;
    if (first + entries.length - 1 < this.offset) return; // all already compacted
    assert(first <= this.lastIndex() + 1, `append at ${first} leaves a gap after ${this.lastIndex()}`);
    let from = 0;
    if (first < this.offset) from = this.offset - first;
    const at = first + from - this.offset;
    if (at < this.ents.length) this.ents.length = at;
    for (let i = from; i < entries.length; i++) this.ents.push(entries[i] as Entry);
  }

  /** Install a snapshot received from the leader: the whole log is replaced. */
  applySnapshot(s: Snapshot): void {
    if (s.meta.index <= this.snap.meta.index) return; // stale
    this.snap = s;
    this.ents = [];
  }

  /** Record a snapshot of the state machine at `index` (<= applied) and drop the log before it. */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    assert(index <= this.lastIndex(), `snapshot at ${index} past last index ${this.lastIndex()}`);
    if (index <= this.snap.meta.index) return this.snap;
    const term = this.term(index);
    assert(term !== undefined, `no term for snapshot index ${index}`);
    const drop = index - this.snap.meta.index;
    this.snap = { meta: { index, term, confState }, data };
    this.ents = this.ents.slice(drop);
    return this.snap;
  }
}

/**
 * Writes the bootstrap of a brand-new cluster into empty storage: one committed conf-change entry per
 * initial member at term 1, as etcd does. Every member bootstraps identically; a node added later starts
 * empty and learns the membership by replicating these entries (or a snapshot).
 */
export function bootstrapStorage(storage: MemoryStorage, voters: readonly number[], learners: readonly number[] = []): void {
  assert(storage.lastIndex() === 0, "bootstrap of non-empty storage");
  const entries: Entry[] = [];
  for (const node of voters) {
    entries.push({ index: entries.length + 1, term: 1, type: "conf-change", data: encodeConfChange({ type: "add-voter", node }) });
  }
  for (const node of learners) {
    entries.push({ index: entries.length + 1, term: 1, type: "conf-change", data: encodeConfChange({ type: "add-learner", node }) });
  }
  storage.append(entries);
  storage.setHardState({ term: 1, vote: NONE, commit: entries.length });
}
