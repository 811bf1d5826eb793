// The state-machine boundary of the runtime: apply committed entries in order, snapshot and restore.
import { assert } from "../errors.ts";
import type { Entry, Snapshot } from "../raft/types.ts";

/**
 * What the runtime applies committed entries to. `apply` is called for every committed entry, in
 * index order, exactly once per index (conf-change and empty no-op entries included: the machine
 * ignores what it does not understand); its result goes to the proposer of that entry, if any.
 * It must be deterministic: every member computes the same state from the same entries.
 */
export interface StateMachine<R = unknown> {
  /**
   * `ctx`: what this node's proposer attached to the entry (RaftNode.proposeBatch), given only
   * when the entry applied is the one proposed (same index and term); undefined otherwise.
   */
  apply(entry: Entry, ctx?: unknown): R;
  /** An image of the state after the last applied entry. */
  snapshot(): Uint8Array;
  /** Replaces the whole state by the snapshot's (at start, and when the leader sends one). */
  restore(snapshot: Snapshot): void;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What the register returns to a proposer: its entry's index and the register's value after it. */
export interface RegisterResult {
  readonly index: number;
  readonly value: string;
}

/**
 * The twin used by the simulator and the runtime's tests: a register holding the last non-empty
 * normal entry's data (as text).
 */
export class RegisterStateMachine implements StateMachine<RegisterResult> {
  value = "";
  applied = 0;
  /** Observers (the simulator's checkers). */
  onApply: ((e: Entry, value: string, ctx: unknown) => void) | undefined;
  onRestore: ((index: number) => void) | undefined;

  apply(e: Entry, ctx?: unknown): RegisterResult {
    if (e.index !== this.applied + 1) assert(false, `register applied ${e.index} after ${this.applied}`);
    const value = e.type === "normal" ? dec.decode(e.data) : "";
    if (value !== "") this.value = value;
    this.applied = e.index;
    this.onApply?.(e, value, ctx);
    return { index: e.index, value: this.value };
  }

  snapshot(): Uint8Array {
    return enc.encode(this.value);
  }

  restore(s: Snapshot): void {
    this.value = dec.decode(s.data);
    this.applied = s.meta.index;
    this.onRestore?.(s.meta.index);
  }
}
