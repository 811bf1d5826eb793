// The in-memory twin of RaftStorage: MemoryStorage as the durable state, writes with a chosen delay, crashes.
import { assert } from "../errors.ts";
import type { RaftStorage } from "../raft/storage.ts";
import { MemoryStorage } from "../raft/storage.ts";
import type { ConfState, Entry, HardState, Snapshot, SnapshotMeta } from "../raft/types.ts";

export type PersistRequest = Parameters<RaftStorage["persist"]>[0];

export interface MemoryRaftStorageOptions {
  /** Steps (see `step()`) until each persist is durable; 0 = durable within persist() itself. */
  persistSteps?: () => number;
  /** Sees every write when it becomes durable (whole, or the surviving part of a torn one). */
  onDurable?: (p: PersistRequest) => void;
  /** Called when an armed crash happens: the owner must treat the process as dead. */
  onCrash?: (how: "torn" | "after-write") => void;
}

interface Inflight {
  readonly p: PersistRequest;
  readonly doneAt: number;
  readonly resolve: () => void;
}

/**
 * One process's view of a MemoryStorage (the "disk"). A crash loses the write in flight (or keeps a
 * prefix of it, for a torn crash); `reopen()` gives the next process the same disk. One persist at a
 * time: a second one before the first resolves is a runtime bug (persist never reorders).
 */
export class MemoryRaftStorage implements RaftStorage {
  private now = 0;
  private inflight: Inflight | undefined;
  private crashed = false;
  private closed = false;
  /** Next write's fate: keep this many of its steps [snapshot, entries..., hardState] (the last is lost), then crash. */
  private tornKeep: ((steps: number) => number) | undefined;
  private crashAfterWrite = false;
  /** State-machine images by index, written before compact() (the runtime's snapshot file). */
  private readonly images = new Map<number, Uint8Array>();
  persists = 0;

  constructor(
    readonly disk: MemoryStorage = new MemoryStorage(),
    private readonly opts: MemoryRaftStorageOptions = {},
  ) {}

  /** The next process over the same disk (after crash() or close()). */
  reopen(opts: MemoryRaftStorageOptions = this.opts): MemoryRaftStorage {
    return new MemoryRaftStorage(this.disk, opts);
  }

  // ---- LogStorage: what is durable ----
  initialState(): { hardState: HardState; confState: ConfState } {
    return this.disk.initialState();
  }
  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    return this.disk.entries(lo, hi, maxBytes);
  }
  term(i: number): number | undefined {
    return this.disk.term(i);
  }
  firstIndex(): number {
    return this.disk.firstIndex();
  }
  lastIndex(): number {
    return this.disk.lastIndex();
  }
  snapshot(): Snapshot {
    return this.disk.snapshot();
  }

  // ---- RaftStorage ----
  persist(p: PersistRequest): Promise<void> {
    assert(!this.closed, "persist after close");
    assert(this.inflight === undefined, "persist while another persist is in flight (persist never reorders)");
    this.persists++;
    return new Promise<void>((resolve) => {
      if (this.crashed) return; // a dead process: never completes
      const steps = this.opts.persistSteps?.() ?? 0;
      this.inflight = { p, doneAt: this.now + steps, resolve };
      if (steps === 0) this.complete();
    });
  }

  /** Advances this disk's clock by one step, completing the write in flight when its time has come. */
  step(): void {
    this.now++;
    if (this.inflight && this.inflight.doneAt <= this.now) this.complete();
  }

  get writing(): boolean {
    return this.inflight !== undefined;
  }

  private complete(): void {
    const w = this.inflight as Inflight;
    this.inflight = undefined;
    if (this.tornKeep && (w.p.snapshot || w.p.entries.length > 0 || w.p.hardState)) {
      this.writeTorn(w.p, this.tornKeep);
      this.crash();
      this.opts.onCrash?.("torn");
      return;
    }
    this.write(w.p);
    this.opts.onDurable?.(w.p);
    if (this.crashAfterWrite) {
      // Durable, but the process dies before it learns so: nothing of this Ready is sent or applied.
      this.crash();
      this.opts.onCrash?.("after-write");
      return;
    }
    if (this.crashed) return;
    w.resolve();
  }

  private write(p: PersistRequest): void {
    if (p.snapshot) this.disk.applySnapshot(p.snapshot);
    this.disk.append(p.entries);
    if (p.hardState) this.disk.setHardState(p.hardState);
  }

  /** A prefix of [snapshot, entries..., hardState] survives, never the whole write. */
  private writeTorn(p: PersistRequest, keepOf: (steps: number) => number): void {
    const steps = (p.snapshot ? 1 : 0) + p.entries.length + (p.hardState ? 1 : 0);
    let k = keepOf(steps);
    assert(k >= 0 && k < steps, `torn write keeps ${k} of ${steps} steps`);
    let snapshot: Snapshot | undefined;
    if (p.snapshot) {
      if (k === 0) return;
      this.disk.applySnapshot(p.snapshot);
      snapshot = p.snapshot;
      k--;
    }
    const entries = p.entries.slice(0, Math.min(k, p.entries.length));
    this.disk.append(entries);
    this.opts.onDurable?.({ snapshot, entries, hardState: undefined });
  }

  /** The next write that changes anything is torn, then the process dies (onCrash); undefined disarms. */
  armTornCrash(keepOf: ((steps: number) => number) | undefined): void {
    this.tornKeep = keepOf;
  }

  /** The next write that changes anything completes, then the process dies before persist() resolves. */
  armCrashAfterWrite(on: boolean): void {
    this.crashAfterWrite = on;
  }

  /** The process dies now: the write in flight is lost whole; nothing of this instance runs again. */
  crash(): void {
    this.crashed = true;
    this.inflight = undefined;
  }

  /** Stores the state-machine image that a following compact(meta) at meta.index refers to. */
  saveImage(index: number, data: Uint8Array): void {
    this.images.set(index, data);
  }

  compact(meta: SnapshotMeta): Promise<void> {
    assert(!this.closed, "compact after close");
    if (this.crashed) return new Promise<void>(() => {});
    const data = this.images.get(meta.index);
    assert(data !== undefined, `compact at ${meta.index} without a saved image`);
    this.images.clear();
    const s = this.disk.createSnapshot(meta.index, meta.confState, data);
    assert(s.meta.index >= meta.index, `compact at ${meta.index} left the snapshot at ${s.meta.index}`);
    return Promise.resolve();
  }

  close(): Promise<void> {
    assert(this.inflight === undefined, "close with a persist in flight");
    this.closed = true;
    return Promise.resolve();
  }
}
