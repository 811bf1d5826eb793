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
  /** Called when an armed crash happens (with the write it hit): the owner must treat the process as dead. */
  onCrash?: (how: "torn" | "after-write", p: PersistRequest) => void;
}

interface Inflight {
  readonly p: PersistRequest;
  readonly doneAt: number;
  readonly resolve: () => void;
}

/**
 * One process's view of a MemoryStorage (the "disk"). Writes become durable in the order issued (a
 * later one never before an earlier one: several may be in flight, as a leader pipelines its
 * appends). A crash loses the writes in flight, or keeps a prefix of the oldest (a torn crash:
 * what reached the disk before the fsync); `reopen()` gives the next process the same disk.
 */
export class MemoryRaftStorage implements RaftStorage {
  private now = 0;
  /** Writes issued and not yet durable, oldest first; each completes no earlier than the one before. */
  private inflight: Inflight[] = [];
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
    this.persists++;
    return new Promise<void>((resolve) => {
      if (this.crashed) return; // a dead process: never completes
      const steps = this.opts.persistSteps?.() ?? 0;
      const prev = this.inflight[this.inflight.length - 1];
      this.inflight.push({ p, doneAt: Math.max(this.now + steps, prev?.doneAt ?? 0), resolve });
      if (steps === 0 && this.inflight.length === 1) this.complete();
    });
  }

  /** Advances this disk's clock by one step, completing the write in flight when its time has come. */
  step(): void {
    this.now++;
    while (!this.crashed && this.inflight.length > 0 && this.inflight[0]!.doneAt <= this.now) this.complete();
  }

  get writing(): boolean {
    return this.inflight.length > 0;
  }

  /** The oldest write in flight becomes durable (or is torn, or durable and then the process dies). */
  private complete(): void {
    const w = this.inflight.shift()!;
    const steps = stepsOf(w.p);
    if (this.tornKeep && steps > 0) {
      const k = this.tornKeep(steps);
      assert(k >= 0 && k < steps, `torn write keeps ${k} of ${steps} steps`);
      this.writePrefix(w.p, k);
      this.crash();
      this.opts.onCrash?.("torn", w.p);
      return;
    }
    this.write(w.p);
    this.opts.onDurable?.(w.p);
    if (this.crashAfterWrite) {
      // Durable, but the process dies before it learns so: nothing of this Ready is sent or applied.
      this.crash();
      this.opts.onCrash?.("after-write", w.p);
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

  /** The first k of the write's steps [snapshot, entries..., hardState] reach the disk (k = all: the whole write). */
  private writePrefix(p: PersistRequest, k: number): void {
    const steps = stepsOf(p);
    assert(k >= 0 && k <= steps, `a write keeps ${k} of ${steps} steps`);
    if (k === 0) return;
    if (k === steps) {
      this.write(p);
      this.opts.onDurable?.(p);
      return;
    }
    let snapshot: Snapshot | undefined;
    if (p.snapshot) {
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

  /**
   * The process dies now; nothing of this instance runs again. The writes in flight (issued, their
   * fsync not returned) are lost whole, except that with `keepOf` the oldest keeps its first
   * keepOf(steps + 1) steps: from none to all of [snapshot, entries..., hardState] (all: written,
   * but never known durable). Returns the oldest write in flight, if any.
   */
  crash(keepOf?: (choices: number) => number): PersistRequest | undefined {
    const w = this.inflight[0];
    this.crashed = true;
    this.inflight = [];
    if (w && keepOf && !this.closed) {
      const steps = stepsOf(w.p);
      if (steps > 0) this.writePrefix(w.p, keepOf(steps + 1));
    }
    return w?.p;
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
    assert(this.inflight.length === 0, "close with a persist in flight");
    this.closed = true;
    return Promise.resolve();
  }
}

/** The steps of one write, in the order they reach the disk: snapshot, entries..., hard state. */
function stepsOf(p: PersistRequest): number {
  return (p.snapshot ? 1 : 0) + p.entries.length + (p.hardState ? 1 : 0);
}
