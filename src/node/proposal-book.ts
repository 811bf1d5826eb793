// The pending proposals of a leader by log index: a window of slots (indices a leader proposes only
// grow, and they are settled mostly from the oldest), with a Map's surface. A Map of a busy leader's
// proposals cost a hash insert, lookup and delete per write (12 % of the write path's CPU in a
// profile of a one-member group at -P 16).
import { assert } from "../errors.ts";

/** Slots settled at the front before the array is cut down to the live window. */
const COMPACT_AFTER = 4096;

export class ProposalBook<P> {
  private slots: (P | undefined)[] = [];
  /** Position in `slots` of the window's first index. */
  private head = 0;
  /** Log index of slots[head]. */
  private first = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(index: number): boolean {
    return this.get(index) !== undefined;
  }

  get(index: number): P | undefined {
    if (this.count === 0) return undefined;
    const at = this.head + index - this.first;
    return at >= this.head && at < this.slots.length ? this.slots[at] : undefined;
  }

  /** Adds the proposal at `index` (none there yet). Below the oldest pending one only when none is pending. */
  set(index: number, p: P): void {
    if (this.count === 0) {
      this.slots = [p];
      this.head = 0;
      this.first = index;
      this.count = 1;
      return;
    }
    assert(index >= this.first, `a proposal at ${index}, below the oldest pending one at ${this.first}`);
    const at = this.head + index - this.first;
    while (this.slots.length < at) this.slots.push(undefined);
    if (at === this.slots.length) this.slots.push(p);
    else {
      assert(this.slots[at] === undefined, `two proposals at index ${index}`);
      this.slots[at] = p;
    }
    this.count++;
  }

  delete(index: number): boolean {
    const at = this.head + index - this.first;
    if (this.count === 0 || at < this.head || at >= this.slots.length || this.slots[at] === undefined) return false;
    this.slots[at] = undefined;
    this.count--;
    if (this.count === 0) {
      this.slots = [];
      this.head = 0;
      return true;
    }
    while (this.slots[this.head] === undefined) {
      this.head++;
      this.first++;
    }
    if (this.head >= COMPACT_AFTER && this.head * 2 >= this.slots.length) {
      this.slots = this.slots.slice(this.head);
      this.head = 0;
    }
    return true;
  }

  /** The pending proposals, oldest index first. */
  *[Symbol.iterator](): IterableIterator<[number, P]> {
    const slots = this.slots;
    for (let at = this.head; at < slots.length; at++) {
      const p = slots[at];
      if (p !== undefined) yield [this.first + at - this.head, p];
    }
  }
}
