// LogStore: what the server (and later raft/) needs from a log, with an in-memory twin for tests.
import { assert } from "../errors.ts";
import { isEntryType, type LogRecord } from "./codec.ts";
import { StorageIoError, WalFailedError } from "./errors.ts";

export type { LogRecord } from "./codec.ts";

/**
 * An append-only sequence of records with contiguous indexes.
 *
 * Ordering rules the callers rely on:
 * - `append` resolves only once the records are as durable as the fsync mode promises
 *   (mode "always": after the fdatasync that covers them). Acknowledge a client after that, never before.
 * - appends are applied in call order; records[0].index must be lastIndex()+1 (checked synchronously:
 *   a wrong index is a caller bug and throws AssertionError).
 * - after a write/fsync failure every pending and later append rejects (StorageIoError for the batch
 *   that failed, WalFailedError after); reads keep working.
 */
export interface LogStore {
  /** Index of the first record still stored; lastIndex()+1 when empty. */
  firstIndex(): number;
  /** Index of the last appended record (including appends not yet durable); 0 for a new log. */
  lastIndex(): number;
  /**
   * Term of the record at `index`, or undefined when it is not stored. For firstIndex()-1 (the record
   * just before the log: 0 for a new log, the reset() point) the term is returned when known.
   */
  term(index: number): number | undefined;
  /** Records in [lo, hi), stopping early after maxBytes of payload (at least one record is returned). */
  entries(lo: number, hi: number, maxBytes?: number): LogRecord[];
  /** Streams records from `from` to the end, in order (recovery replay). */
  replay(from: number): Iterable<LogRecord>;
  append(records: readonly LogRecord[]): Promise<void>;
  /** Deletes every record after `index` (Raft: a conflicting suffix). Must not overlap an append. */
  truncateAfter(index: number): Promise<void>;
  /** Compaction: frees storage for records <= index. Whole segments only: records may remain. */
  deleteThrough(index: number): Promise<void>;
  /** Drops everything and restarts the log after (index, term) (Raft: a snapshot was installed). */
  reset(index: number, term: number): Promise<void>;
  /** Makes everything appended so far durable, whatever the fsync mode. */
  sync(): Promise<void>;
  close(): Promise<void>;
  /** Set once a write or fsync failed; the log refuses writes from then on. */
  readonly failure: StorageIoError | undefined;
}

/** In-memory twin of the disk WAL: same contract, no I/O. `failNextAppend` simulates a disk error. */
export class MemoryLogStore implements LogStore {
  private records: LogRecord[] = [];
  private base = 0; // index before records[0]
  private baseTerm = 0;
  failure: StorageIoError | undefined;

  firstIndex(): number {
    return this.base + 1;
  }
  lastIndex(): number {
    return this.base + this.records.length;
  }
  term(index: number): number | undefined {
    if (index === this.base) return this.baseTerm;
    return this.records[index - this.base - 1]?.term;
  }
  entries(lo: number, hi: number, maxBytes = Infinity): LogRecord[] {
    assert(lo >= this.firstIndex() && hi <= this.lastIndex() + 1 && lo <= hi, `entries(${lo}, ${hi}) outside [${this.firstIndex()}, ${this.lastIndex() + 1})`);
    const out: LogRecord[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const r = this.records[i - this.base - 1]!;
      if (out.length > 0 && bytes + r.payload.length > maxBytes) break;
      bytes += r.payload.length;
      out.push(r);
    }
    return out;
  }
  *replay(from: number): Iterable<LogRecord> {
    for (let i = Math.max(from, this.firstIndex()); i <= this.lastIndex(); i++) yield this.records[i - this.base - 1]!;
  }
  private failNext: StorageIoError | undefined;
  /** The next append fails as if the disk returned `code`; the store is failed afterwards. */
  failNextAppend(code = "EIO"): void {
    this.failNext = new StorageIoError("fsync", "memory", Object.assign(new Error(code), { code }));
  }
  append(records: readonly LogRecord[]): Promise<void> {
    if (this.failure) return Promise.reject(new WalFailedError(this.failure));
    checkContiguous(records, this.lastIndex(), this.term(this.lastIndex()) ?? 0);
    if (this.failNext) {
      this.failure = this.failNext;
      this.failNext = undefined;
      return Promise.reject(this.failure);
    }
    for (const r of records) if (isEntryType(r.type)) this.records.push(r);
    return Promise.resolve();
  }
  async truncateAfter(index: number): Promise<void> {
    assert(index >= this.base, `truncateAfter(${index}) below first index ${this.firstIndex()}`);
    if (index < this.lastIndex()) this.records.length = index - this.base;
  }
  async deleteThrough(index: number): Promise<void> {
    // Like the disk WAL, keep the last record so lastIndex/term survive.
    const drop = Math.min(index, this.lastIndex() - 1) - this.base;
    if (drop <= 0) return;
    this.baseTerm = this.records[drop - 1]!.term;
    this.records.splice(0, drop);
    this.base += drop;
  }
  async reset(index: number, term: number): Promise<void> {
    this.records = [];
    this.base = index;
    this.baseTerm = term;
  }
  async sync(): Promise<void> {}
  async close(): Promise<void> {}
}

/** Shared by both stores: records must continue the log without gaps and with non-decreasing terms. */
export function checkContiguous(records: readonly LogRecord[], lastIndex: number, lastTerm: number): void {
  let expect = lastIndex + 1;
  let term = lastTerm;
  for (const r of records) {
    // Messages are built only on failure: this runs on every append.
    if (r.index !== expect) assert(false, `append: record index ${r.index}, expected ${expect}`);
    if (!isEntryType(r.type)) {
      // A hard state takes no index: it carries the next entry's index and the last entry's term.
      if (r.term !== term) assert(false, `append: hard state with term ${r.term} after an entry of term ${term}`);
      continue;
    }
    if (!(r.term >= term)) assert(false, `append: term ${r.term} at index ${r.index} is below the previous term ${term}`);
    expect++;
    term = r.term;
  }
}
