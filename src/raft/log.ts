// The Raft log: a stable prefix (LogStorage) plus an unstable suffix not yet handed over for persistence.
import { assert } from "../errors.ts";
import type { LogStorage } from "./storage.ts";
import { entryBytes } from "./storage.ts";
import type { Entry, Snapshot } from "./types.ts";

/** Entries (and possibly a snapshot) appended in memory but not yet persisted by the runtime. */
class Unstable {
  snapshot: Snapshot | undefined = undefined;
  entries: Entry[] = [];
  /** Index of entries[0]. */
  offset: number;
  /**
   * Entries below this index were handed to the runtime to persist (by RawNode.ready) and are not
   * yet acknowledged durable; offset <= offsetInProgress <= offset + entries.length. A runtime may
   * persist the next entries while earlier ones are still being written (a leader's pipeline).
   */
  offsetInProgress: number;

  constructor(offset: number) {
    this.offset = offset;
    this.offsetInProgress = offset;
  }

  /** Entries not yet handed to the runtime to persist. */
  toPersist(): readonly Entry[] {
    const from = this.offsetInProgress - this.offset;
    return from === 0 ? this.entries : this.entries.slice(from);
  }

  /** Every unstable entry was handed to the runtime to persist. */
  acceptInProgress(): void {
    this.offsetInProgress = this.offset + this.entries.length;
  }

  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.meta.index + 1 : undefined;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot ? this.snapshot.meta.index : undefined;
  }

  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot && this.snapshot.meta.index === i) return this.snapshot.meta.term;
      return undefined;
    }
    const e = this.entries[i - this.offset];
    return e ? e.term : undefined;
  }

  stableTo(i: number, t: number): void {
    const gt = this.maybeTerm(i);
    // A newer leader may have rewritten i since that Ready was taken: then i is not stable as such.
    if (gt === t && i >= this.offset) {
      this.entries = this.entries.slice(i + 1 - this.offset);
      this.offset = i + 1;
      if (this.offsetInProgress < this.offset) this.offsetInProgress = this.offset;
    }
  }

  stableSnapTo(i: number): void {
    if (this.snapshot && this.snapshot.meta.index === i) this.snapshot = undefined;
  }

  restore(s: Snapshot): void {
    this.offset = s.meta.index + 1;
    this.offsetInProgress = this.offset;
    this.entries = [];
    this.snapshot = s;
  }

  truncateAndAppend(ents: readonly Entry[]): void {
    const after = (ents[0] as Entry).index;
    if (after === this.offset + this.entries.length) {
      for (const e of ents) this.entries.push(e);
    } else if (after <= this.offset) {
      // Replaces everything unstable; the runtime truncates storage when it persists these.
      this.offset = after;
      this.offsetInProgress = after;
      this.entries = ents.slice();
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(ents);
      // Entries from `after` are new: they must be persisted again even if older ones there were in progress.
      if (this.offsetInProgress > after) this.offsetInProgress = after;
    }
  }
}

export class RaftLog {
  readonly storage: LogStorage;
  readonly unstable: Unstable;
  /** Highest index known committed by a quorum. */
  committed: number;
  /** Highest index handed to the application (acknowledged via advance). */
  applied: number;
  readonly maxMsgBytes: number;

  /** Byte budget of the committed entries one Ready applies (see RaftConfig.committedBytesPerReadyMax). */
  private readonly maxApplyBytes: number;

  constructor(storage: LogStorage, maxMsgBytes: number, maxApplyBytes: number = Number.MAX_SAFE_INTEGER) {
    this.storage = storage;
    this.maxMsgBytes = maxMsgBytes;
    this.maxApplyBytes = maxApplyBytes;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** Last index already persisted by the runtime (acknowledged through advance). */
  lastStableIndex(): number {
    return this.unstable.offset - 1;
  }

  lastTerm(): number {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, "no term for last index");
    return t;
  }

  /** Term of entry i, or undefined if i is compacted away or beyond the log. */
  term(i: number): number | undefined {
    const dummy = this.firstIndex() - 1;
    if (i < dummy || i > this.lastIndex()) return undefined;
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    return this.storage.term(i);
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t;
  }

  /** Raft §5.4.1: is (lastIndex, lastTerm) at least as up to date as our log? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Follower side of AppendEntries. Returns the last index known to match, or undefined if
   * (index, logTerm) does not match our log.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      assert(ci > this.committed, `entry ${ci} conflicts with committed entry (commit ${this.committed})`);
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  /** Index of the first entry that is new or conflicts with ours; 0 if all are present. */
  private findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Largest index <= index whose term is <= term (or the first index - 1). Used on both sides of
   * fast backtracking: every entry above it is known not to match a log whose entry at `index` has `term`.
   */
  findConflictByTerm(index: number, term: number): number {
    let i = Math.min(index, this.lastIndex());
    for (; i > 0; i--) {
      const t = this.term(i);
      if (t === undefined || t <= term) break;
    }
    return i;
  }

  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = (ents[0] as Entry).index - 1;
    assert(after >= this.committed, `append after ${after} would overwrite commit ${this.committed}`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  unstableEntries(): readonly Entry[] {
    return this.unstable.entries;
  }

  /** Unstable entries not yet handed to the runtime to persist (see Unstable.offsetInProgress). */
  entriesToPersist(): readonly Entry[] {
    return this.unstable.toPersist();
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  /**
   * The highest index the application may apply: committed, and durable on this node too. A
   * leader may learn an entry committed (from its followers) while its own write of it is still in
   * flight; it applies the entry once that write is durable, so a node never holds in its state
   * (or a snapshot of it) an entry its own log may not.
   */
  private applicableTo(): number {
    return Math.min(this.committed, this.lastStableIndex());
  }

  /** Committed entries not yet applied (none while a snapshot waits to be installed). */
  nextCommittedEntries(): Entry[] {
    if (this.hasPendingSnapshot()) return [];
    const lo = Math.max(this.applied + 1, this.firstIndex());
    const hi = this.applicableTo();
    if (hi + 1 <= lo) return [];
    return this.slice(lo, hi + 1, this.maxApplyBytes);
  }

  hasNextCommittedEntries(): boolean {
    if (this.hasPendingSnapshot()) return false;
    return this.applicableTo() > Math.max(this.applied, this.firstIndex() - 1);
  }

  /** Entries from lo to the end (bounded by maxBytes), or undefined if lo - 1 is compacted. */
  entriesFrom(lo: number, maxBytes: number): Entry[] | undefined {
    if (lo < this.firstIndex()) return undefined;
    const last = this.lastIndex();
    if (lo > last) return [];
    return this.slice(lo, last + 1, maxBytes);
  }

  /** Entries [lo, hi) with lo >= firstIndex(), at least one, cut after maxBytes. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    assert(lo >= this.firstIndex(), `slice at ${lo} below first index ${this.firstIndex()}`);
    assert(hi <= this.lastIndex() + 1, `slice to ${hi} past last index ${this.lastIndex()}`);
    if (lo === hi) return [];
    const off = this.unstable.offset;
    let out: Entry[] = [];
    if (lo < off) {
      out = this.storage.entries(lo, Math.min(hi, off), maxBytes);
      // Storage cut the batch short for size: stop there.
      if (out.length < Math.min(hi, off) - lo) return out;
    }
    if (hi > off) {
      let bytes = 0;
      for (const e of out) bytes += entryBytes(e);
      const ue = this.unstable.entries;
      for (let i = Math.max(lo, off); i < hi; i++) {
        const e = ue[i - off] as Entry;
        bytes += entryBytes(e);
        if (out.length > 0 && bytes > maxBytes) break;
        out.push(e);
      }
    }
    return out;
  }

  /** Leader: commit maxIndex if it carries the current term (never count older-term replicas: Figure 8). */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.term(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  commitTo(tocommit: number): void {
    if (tocommit <= this.committed) return; // commit never decreases
    assert(tocommit <= this.lastIndex(), `commit ${tocommit} past last index ${this.lastIndex()}`);
    this.committed = tocommit;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    assert(i <= this.committed && i >= this.applied, `applied ${i} outside [${this.applied}, ${this.committed}]`);
    this.applied = i;
  }

  stableTo(i: number, t: number): void {
    this.unstable.stableTo(i, t);
  }

  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  /** Replace the whole log with a snapshot (follower, snapshot newer than anything we have committed). */
  restore(s: Snapshot): void {
    assert(s.meta.index > this.committed, "restore of a snapshot at or below commit");
    this.committed = s.meta.index;
    this.unstable.restore(s);
  }

  /** The snapshot to send a lagging follower. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }
}
