// The changes KV.WATCH can replay: the latest applied change records, bounded by count and bytes,
// and the index from which every change is held. Filled as entries apply (also while a node
// replays its log at start); a snapshot restored clears it. A ring of parallel arrays, grown by
// doubling up to the count bound: a record costs no allocation of its own on the write path. Pure.
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

function bytesOf(event: string, key: string, value: string | null): number {
  return RECORD_OVERHEAD_BYTES + event.length + key.length + (value === null ? 0 : value.length);
}

export function recordBytes(r: ChangeRecord): number {
  return bytesOf(r.event, r.key, r.value);
}

const INITIAL_CAPACITY = 1024;

export class WatchHistory {
  private idx: number[] = [];
  private ev: string[] = [];
  private keys: string[] = [];
  private vals: (string | null)[] = [];
  private cap = 0;
  /** Slot of the oldest record, and the records held. */
  private head = 0;
  private count = 0;
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
    return this.count;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  /** Keeps nothing: add() only moves startIndex. */
  get disabled(): boolean {
    return this.maxRecords === 0 || this.maxBytes === 0;
  }

  private slot(i: number): number {
    const s = this.head + i;
    return s >= this.cap ? s - this.cap : s;
  }

  private grow(): void {
    const cap = Math.min(this.maxRecords, Math.max(INITIAL_CAPACITY, this.cap * 2));
    const idx: number[] = new Array(cap);
    const ev: string[] = new Array(cap);
    const keys: string[] = new Array(cap);
    const vals: (string | null)[] = new Array(cap);
    for (let i = 0; i < this.count; i++) {
      const s = this.slot(i);
      idx[i] = this.idx[s]!;
      ev[i] = this.ev[s]!;
      keys[i] = this.keys[s]!;
      vals[i] = this.vals[s]!;
    }
    this.idx = idx;
    this.ev = ev;
    this.keys = keys;
    this.vals = vals;
    this.cap = cap;
    this.head = 0;
  }

  /** Appends a change (indexes never go back); the oldest indexes go, whole, past the bounds. */
  add(index: number, event: string, key: string, value: string | null): void {
    const last = this.count > 0 ? this.idx[this.slot(this.count - 1)]! : this.startIndex - 1;
    if (index < last) assert(false, `watch history: change at ${index} after ${last}`);
    if (this.disabled) {
      this.startIndex = index + 1;
      return;
    }
    if (this.count === this.maxRecords) this.dropOldestIndex();
    if (this.count === this.cap) this.grow();
    const s = this.slot(this.count);
    this.idx[s] = index;
    this.ev[s] = event;
    this.keys[s] = key;
    this.vals[s] = value;
    this.count++;
    this.bytes += bytesOf(event, key, value);
    while (this.bytes > this.maxBytes && this.count > 0) this.dropOldestIndex();
  }

  /** Drops every record of the oldest index held. */
  private dropOldestIndex(): void {
    const first = this.idx[this.head]!;
    while (this.count > 0 && this.idx[this.head] === first) {
      const h = this.head;
      this.bytes -= bytesOf(this.ev[h]!, this.keys[h]!, this.vals[h]!);
      this.keys[h] = this.ev[h] = "";
      this.vals[h] = null;
      this.head = h + 1 === this.cap ? 0 : h + 1;
      this.count--;
    }
    this.startIndex = first + 1;
  }

  /** A snapshot at `index` replaced the keyspace: nothing before index + 1 is known any more. */
  reset(index: number): void {
    this.idx = [];
    this.ev = [];
    this.keys = [];
    this.vals = [];
    this.cap = 0;
    this.head = 0;
    this.count = 0;
    this.bytes = 0;
    this.startIndex = index + 1;
  }

  /** The records from index `from` on, in order; null when changes at `from` are no longer held. */
  since(from: number): ChangeRecord[] | null {
    if (from < this.startIndex) return null;
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.idx[this.slot(mid)]! < from) lo = mid + 1;
      else hi = mid;
    }
    const out: ChangeRecord[] = [];
    for (let i = lo; i < this.count; i++) {
      const s = this.slot(i);
      out.push({ index: this.idx[s]!, event: this.ev[s]!, key: this.keys[s]!, value: this.vals[s]! });
    }
    return out;
  }
}
