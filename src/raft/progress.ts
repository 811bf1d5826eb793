// The leader's view of one follower: how much matches, what to send next, and flow control.
import { assert } from "../errors.ts";

/** Bounded ring of the last indices of in-flight append messages (replicate state). */
export class Inflights {
  private readonly buf: number[];
  private start = 0;
  private count = 0;

  constructor(readonly size: number) {
    assert(size > 0, "inflights size must be positive");
    this.buf = new Array<number>(size).fill(0);
  }

  add(lastIndex: number): void {
    assert(!this.full(), "inflights overflow");
    this.buf[(this.start + this.count) % this.size] = lastIndex;
    this.count++;
  }

  /** Frees every message whose last index is <= to (acknowledged). */
  freeLE(to: number): void {
    while (this.count > 0 && (this.buf[this.start] as number) <= to) {
      this.start = (this.start + 1) % this.size;
      this.count--;
    }
  }

  freeFirstOne(): void {
    if (this.count > 0) this.freeLE(this.buf[this.start] as number);
  }

  full(): boolean {
    return this.count === this.size;
  }

  get length(): number {
    return this.count;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}

/**
 * probe: one append at a time until we find where the logs match;
 * replicate: stream appends optimistically, at most `size` in flight;
 * snapshot: a snapshot is on its way; send nothing else.
 */
export type ProgressState = "probe" | "replicate" | "snapshot";

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** In snapshot state: index of the snapshot sent. */
  pendingSnapshot = 0;
  /** Ticks spent in snapshot state: a lost snapshot message is retried after a timeout. */
  snapshotTicks = 0;
  /** Heard from within the current check-quorum window. */
  recentActive = false;
  /** In probe state: an append is outstanding; wait for its answer or a heartbeat response. */
  probeSent = false;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(next: number, inflightMessagesMax: number, isLearner: boolean) {
    this.next = next;
    this.inflights = new Inflights(inflightMessagesMax);
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotTicks = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot, the follower will have at least the snapshot: start probing after it.
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** An acceptance up to n arrived. Returns whether match advanced. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /** Replicate state: entries up to n were sent; assume they will land. */
  optimisticUpdate(n: number): void {
    this.next = n + 1;
  }

  /**
   * A rejection of the append at `rejected` arrived, with the follower's hint of the last index that may
   * match. Returns false for a stale rejection (already superseded).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }
}
