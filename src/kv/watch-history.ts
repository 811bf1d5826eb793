// The changes KV.WATCH can replay: the latest applied change records, bounded by count and bytes,
// and the index from which every change is held. Filled as entries apply (also while a node
// replays its log at start); a snapshot restored clears it. Pure.
import { assert } from "../errors.ts";

export interface ChangeRecord {
  readonly index: number;
  readonly event: string;
  readonly key: string;
  /** The key's value after the change; null when the change removed it (del, expired, rename_from, flush). */
  readonly value: string | null;
}

/** Bytes a record is counted for: its strings and a fixed overhead. */
export const RECORD_OVERHEAD_BYTES = 64;

export function recordBytes(r: ChangeRecord): number {
  return RECORD_OVERHEAD_BYTES + r.event.length + r.key.length + (r.value === null ? 0 : r.value.length);
}

export class WatchHistory {
  private records: ChangeRecord[] = [];
  private head = 0;
  private bytes = 0;
  /** Every change at index >= startIndex is held (none before it). */
  startIndex: number;

  constructor(
    readonly maxRecords: number,
    readonly maxBytes: number,
    startIndex: number,
  ) {
    assert(maxRecords >= 0 && maxBytes >= 0 && startIndex >= 1, "watch history bounds");
    this.startIndex = startIndex;
  }

  get size(): number {
    return this.records.length - this.head;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  /** Appends a change (indexes never go back); the oldest indexes go, whole, past the bounds. */
  add(r: ChangeRecord): void {
    const last = this.records.length > this.head ? this.records[this.records.length - 1]!.index : this.startIndex - 1;
    assert(r.index >= last, `watch history: change at ${r.index} after ${last}`);
    if (this.maxRecords === 0 || this.maxBytes === 0) {
      this.startIndex = r.index + 1;
      return;
    }
    this.records.push(r);
    this.bytes += recordBytes(r);
    while (this.size > this.maxRecords || (this.bytes > this.maxBytes && this.size > 0)) this.dropOldestIndex();
    if (this.head > 1024 && this.head * 2 > this.records.length) {
      this.records = this.records.slice(this.head);
      this.head = 0;
    }
  }

  /** Drops every record of the oldest index held. */
  private dropOldestIndex(): void {
    const idx = this.records[this.head]!.index;
    while (this.head < this.records.length && this.records[this.head]!.index === idx) {
      this.bytes -= recordBytes(this.records[this.head]!);
      this.head++;
    }
    this.startIndex = idx + 1;
  }

  /** A snapshot at `index` replaced the keyspace: nothing before index + 1 is known any more. */
  reset(index: number): void {
    this.records = [];
    this.head = 0;
    this.bytes = 0;
    this.startIndex = index + 1;
  }

  /** The records from index `from` on, in order; null when changes at `from` are no longer held. */
  since(from: number): ChangeRecord[] | null {
    if (from < this.startIndex) return null;
    let lo = this.head;
    let hi = this.records.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.records[mid]!.index < from) lo = mid + 1;
      else hi = mid;
    }
    return this.records.slice(lo);
  }
}
