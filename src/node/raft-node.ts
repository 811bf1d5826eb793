// The Raft runtime: drives a RawNode over RaftStorage, Transport and a StateMachine (no timers, no clock).
import { ProposalBook } from "./proposal-book.ts";
import { assert } from "../errors.ts";
import type { RaftConfig } from "../raft/raft.ts";
import type { Rand } from "../raft/rand.ts";
import { RawNode, type Status } from "../raft/rawnode.ts";
import type { RaftStorage } from "../raft/storage.ts";
import { NONE, type ConfChange, type Entry, type HardState, type Message, type NodeId, type Ready, type SnapshotMeta } from "../raft/types.ts";
import type { StateMachine } from "./state-machine.ts";
import type { Transport } from "./transport.ts";

/** This node does not lead: send the request to `leader` (NONE: no leader known now). */
export class NotLeaderError extends Error {
  override name = "NotLeaderError";
  constructor(readonly leader: NodeId) {
    super(leader === NONE ? "no leader known" : `not the leader; the leader is ${leader}`);
  }
}

/** The request was not carried out and never will be (safe to retry): busy, transferring, or lost. */
export class DroppedError extends Error {
  override name = "DroppedError";
  constructor(readonly reason: string) {
    super(`dropped: ${reason}`);
  }
}

/** Leadership was lost after the entry was appended: it may or may not be applied later. */
export class UnknownOutcomeError extends Error {
  override name = "UnknownOutcomeError";
  constructor(readonly index: number) {
    super(`outcome of the entry at ${index} unknown: leadership lost`);
  }
}

/** The node was closed or stopped on a storage failure before the request completed. */
export class NodeClosedError extends Error {
  override name = "NodeClosedError";
}

export interface RaftNodeConfig<R> {
  readonly id: NodeId;
  readonly storage: RaftStorage;
  readonly transport: Transport;
  readonly stateMachine: StateMachine<R>;
  readonly rand: Rand;
  /** Raft tuning (ticks, windows, limits). */
  readonly raft?: Partial<Omit<RaftConfig, "id" | "storage" | "rand" | "applied">>;
  /**
   * Makes a state-machine image durable (the snapshot file) before the log is compacted up to
   * meta.index. Required for snapshotEntries and snapshot().
   */
  readonly saveSnapshot?: (meta: SnapshotMeta, data: Uint8Array) => Promise<void>;
  /** Snapshot and compact once this many applied entries are past the last snapshot (0: only on snapshot()). */
  readonly snapshotEntries?: number;
  /** Prefix of ReadIndex contexts: unique per process incarnation, so a late reply never matches. */
  readonly readCtxPrefix?: string;
  /**
   * The node stopped: storage failed, or an invariant broke in the Ready loop's asynchronous part.
   * The process should exit (its durable state is unknown). Default: rethrow (an unhandled rejection).
   */
  readonly onFatal?: (err: unknown) => void;
  /** Called after each Ready that applied entries or a snapshot, once its proposals and reads are settled. */
  readonly onApplied?: () => void;
  /**
   * Runs `next` in a later turn of the event loop (setImmediate). When set, the loop yields after a
   * Ready that applied entries while more work waits (see yieldAfter). Unset (tests, the simulator):
   * the loop runs on.
   */
  readonly yieldAfterApply?: (next: () => void) => void;
  /**
   * A leader writes its own entries while the loop goes on (default true): the next Ready's append
   * starts while the previous one's fdatasync runs. False: every persist finishes before the next Ready.
   */
  readonly pipelineAppends?: boolean;
}

/** ReadIndex rounds awaiting confirmation at once (each costs one heartbeat to every peer). */
export const READ_ROUNDS_IN_FLIGHT_MAX = 8;
/** Stands for the result of a proposeBatch entry (never awaited). */
const NO_RESULT: Promise<unknown> = new Promise(() => {});

/** A proposal awaiting its entry: a promise's (resolve, reject), or proposeBatch's (ctx, onFail). */
interface PendingProposal<R> {
  readonly term: number;
  readonly resolve: ((r: R) => void) | undefined;
  readonly reject: ((e: Error) => void) | undefined;
  /** Given to the state machine with the entry, when the entry applied is this proposal's (proposeBatch). */
  readonly ctx?: unknown;
  readonly onFail?: (index: number, err: Error, ctx: unknown) => void;
}

/** The proposal at `index` will not apply as proposed (or its outcome is unknown). */
function rejectProposal<R>(index: number, p: PendingProposal<R>, err: Error): void {
  if (p.onFail !== undefined) p.onFail(index, err, p.ctx);
  else p.reject!(err);
}

interface Waiter {
  readonly resolve: (index: number) => void;
  readonly reject: (e: Error) => void;
}

export interface NodeStatus extends Status {
  /** Index the state machine reflects (the runtime's count; Raft's `applied` lags until advance). */
  readonly smApplied: number;
  readonly persisting: boolean;
  readonly pendingProposals: number;
  readonly pendingReads: number;
}

/**
 * One member. Inputs: tick() (from a driver's interval), step(msg) (from the transport), propose,
 * readIndex. The Ready loop runs after each input: persist -> send -> restore/apply -> advance.
 * A persist holds the loop until it is durable, except a leader's append of its own entries in a
 * term and vote already durable: that write runs while the loop goes on (its messages go out at
 * once, later Readies are taken and their appends queue behind it), and the leader counts those
 * entries toward a quorum only once the write is durable (RawNode.persisted).
 */
export class RaftNode<R = unknown> {
  readonly id: NodeId;
  /** The core, for status and tests; inputs go through this class. */
  readonly rawNode: RawNode;
  private readonly storage: RaftStorage;
  private readonly transport: Transport;
  private readonly sm: StateMachine<R>;
  private readonly cfg: RaftNodeConfig<R>;
  /** Index the state machine reflects. */
  private applied: number;
  /** The Ready whose persist is in flight, finished once it is durable (see pump). */
  private persisting: Ready | undefined;
  /** Leader appends being written, their Readies already finished (see mayPipeline). */
  private pipelined = 0;
  private pumping = false;
  /** Set by close() or a storage failure: inputs are refused. */
  private stopped: Error | undefined;
  /** Storage failed: nothing more is finished. */
  private failed: Error | undefined;
  private compactingFlag = false;
  /** snapshot() waits for the commit index to be written before it starts. */
  private snapshotWaiting = false;
  /** Proposals by index, all from one leadership term (`leaderTerm`). */
  private readonly proposals = new ProposalBook<PendingProposal<R>>();
  private leaderTerm = 0;
  /** As last seen leading: a leadership transfer was under way. */
  private transferring = false;
  /** Reads waiting for the next round; the round awaiting its ReadState; rounds waiting for apply. */
  private readQueue: Waiter[] = [];
  private readonly readRounds = new Map<string, { term: number; waiters: Waiter[] }>();
  private confirmedReads: { index: number; waiters: Waiter[] }[] = [];
  private readSeq = 0;

  constructor(cfg: RaftNodeConfig<R>) {
    this.cfg = cfg;
    this.id = cfg.id;
    this.storage = cfg.storage;
    this.transport = cfg.transport;
    this.sm = cfg.stateMachine;
    const written = cfg.storage.initialState().hardState;
    this.writtenTerm = written.term;
    this.writtenVote = written.vote;
    const snap = cfg.storage.snapshot();
    this.sm.restore(snap);
    this.applied = snap.meta.index;
    this.rawNode = new RawNode({ ...cfg.raft, id: cfg.id, storage: cfg.storage, rand: cfg.rand, applied: snap.meta.index });
    this.transport.onMessage((m) => this.step(m));
    this.pump();
  }

  // ---- inputs ----

  /** Advances logical time by one tick (the driver calls it on its interval). */
  tick(): void {
    if (this.stopped) return;
    this.rawNode.tick();
    this.pump();
    this.saveHardState();
  }

  /** A message from a peer. Messages for another id are dropped (a misrouted or stale connection). */
  step(m: Message): void {
    if (this.stopped || m.to !== this.id) return;
    this.rawNode.step(m);
    this.pump();
  }

  /**
   * Appends `data` and resolves with the state machine's result once the entry is committed and
   * applied here. Rejects with NotLeaderError (with the leader hint), DroppedError (not appended,
   * or overwritten: safe to retry) or UnknownOutcomeError (leadership lost after appending).
   */
  propose(data: Uint8Array): Promise<R> {
    return this.proposeWith((rn) => rn.propose(data));
  }

  /** Single-server membership change; resolves once the change is applied here. */
  proposeMembershipChange(cc: ConfChange): Promise<R> {
    return this.proposeWith((rn) => rn.proposeMembershipChange(cc));
  }

  /**
   * Proposes each of `datas` in order, then runs the Ready loop once, so they share one persist.
   * Each item: its index, term and result (as propose), or why it was not appended (NotLeaderError,
   * DroppedError, NodeClosedError: nothing after the first refusal is appended).
   */
  proposeMany(datas: readonly Uint8Array[]): ({ index: number; term: number; result: Promise<R> } | { error: Error })[] {
    return this.proposeEach(datas);
  }

  /**
   * As proposeMany without a promise per entry (the hot path of a busy leader): `ctxs[i]` goes to
   * the state machine with entry i when it applies as proposed (StateMachine.apply's ctx), and
   * `onFail(index, err, ctx)` is called instead for an appended entry that will not (the reasons
   * propose rejects with).
   */
  proposeBatch<C>(datas: readonly Uint8Array[], ctxs: readonly C[], onFail: (index: number, err: Error, ctx: C) => void): ({ index: number; term: number } | { error: Error })[] {
    assert(ctxs.length === datas.length, "one context per proposal");
    return this.proposeEach(datas, ctxs, onFail as (index: number, err: Error, ctx: unknown) => void);
  }

  private proposeEach(
    datas: readonly Uint8Array[],
    ctxs?: readonly unknown[],
    onFail?: (index: number, err: Error, ctx: unknown) => void,
  ): ({ index: number; term: number; result: Promise<R> } | { error: Error })[] {
    const out: ({ index: number; term: number; result: Promise<R> } | { error: Error })[] = [];
    let refused: Error | undefined = this.stopped;
    const raft = this.rawNode.raft;
    if (refused === undefined && raft.role !== "leader") refused = new NotLeaderError(raft.lead);
    if (refused === undefined && onFail !== undefined && datas.length > 1) {
      // The server's batch: appended as one (all or none); refused, it goes one by one below (a
      // prefix may still fit under the uncommitted-entries bound).
      const r = this.rawNode.proposeBatch(datas);
      if (r.ok) {
        if (r.term !== this.leaderTerm) {
          this.failProposals();
          this.leaderTerm = r.term;
        }
        const first = r.index - datas.length + 1;
        for (let i = 0; i < datas.length; i++) {
          const index = first + i;
          assert(!this.proposals.has(index), `two proposals at index ${index}`);
          const ctx = ctxs![i];
          this.proposals.set(index, { term: r.term, resolve: undefined, reject: undefined, ctx, onFail });
          out.push({ index, term: r.term, result: NO_RESULT as Promise<R> });
        }
        this.pump();
        return out;
      }
    }
    for (const data of datas) {
      if (refused !== undefined) {
        out.push({ error: refused });
        continue;
      }
      const r = this.rawNode.propose(data);
      if (!r.ok) {
        refused = r.reason === "not-leader" ? new NotLeaderError(raft.lead) : new DroppedError(r.reason);
        out.push({ error: refused });
        continue;
      }
      if (r.term !== this.leaderTerm) {
        this.failProposals();
        this.leaderTerm = r.term;
      }
      assert(!this.proposals.has(r.index), `two proposals at index ${r.index}`);
      if (onFail !== undefined) {
        const index = r.index;
        const ctx = ctxs![out.length];
        this.proposals.set(index, { term: r.term, resolve: undefined, reject: undefined, ctx, onFail });
        out.push({ index, term: r.term, result: NO_RESULT as Promise<R> });
        continue;
      }
      const result = new Promise<R>((resolve, reject) => {
        this.proposals.set(r.index, { term: r.term, resolve, reject });
      });
      out.push({ index: r.index, term: r.term, result });
    }
    this.pump();
    return out;
  }

  private proposeWith(f: (rn: RawNode) => ReturnType<RawNode["propose"]>): Promise<R> {
    if (this.stopped) return Promise.reject(this.stopped);
    const raft = this.rawNode.raft;
    if (raft.role !== "leader") return Promise.reject(new NotLeaderError(raft.lead));
    const r = f(this.rawNode);
    if (!r.ok) {
      if (r.reason === "not-leader") return Promise.reject(new NotLeaderError(raft.lead));
      return Promise.reject(new DroppedError(r.reason));
    }
    if (r.term !== this.leaderTerm) {
      // Leadership of the older term ended (normally settled at the next Ready already).
      this.failProposals();
      this.leaderTerm = r.term;
    }
    assert(!this.proposals.has(r.index), `two proposals at index ${r.index}`);
    const p = new Promise<R>((resolve, reject) => {
      this.proposals.set(r.index, { term: r.term, resolve, reject });
    });
    this.pump();
    return p;
  }

  /**
   * A linearizable read point: resolves with an index once this node (the leader) has confirmed its
   * leadership with a quorum after the read began and its state machine has applied that index; the
   * caller then reads local state. Reads that arrive while a round is in flight share the next round.
   */
  readIndex(): Promise<number> {
    if (this.stopped) return Promise.reject(this.stopped);
    const raft = this.rawNode.raft;
    if (raft.role !== "leader") return Promise.reject(new NotLeaderError(raft.lead));
    const p = new Promise<number>((resolve, reject) => this.readQueue.push({ resolve, reject }));
    // Reads made in one run of the program (before it yields) share one round.
    if (!this.readRoundScheduled) {
      this.readRoundScheduled = true;
      queueMicrotask(() => {
        this.readRoundScheduled = false;
        this.startReadRound();
        this.pump();
      });
    }
    return p;
  }

  private readRoundScheduled = false;

  /** Starts an election now (operator action and tests; normally the election timeout does it). */
  campaign(): void {
    if (this.stopped) return;
    this.rawNode.campaign();
    this.pump();
  }

  transferLeadership(to: NodeId): ReturnType<RawNode["transferLeadership"]> {
    if (this.stopped) return "not-leader";
    const r = this.rawNode.transferLeadership(to);
    this.pump();
    return r;
  }

  /** The transport finished sending a snapshot to `id` (ok: the peer holds it) or gave up on it. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    if (this.stopped) return;
    this.rawNode.reportSnapshot(id, ok);
    this.pump();
  }

  /** Snapshots the state machine at the applied index and compacts the log up to it. */
  async snapshot(): Promise<void> {
    if (this.stopped || this.compactingFlag || this.snapshotWaiting) return;
    const save = this.cfg.saveSnapshot;
    assert(save !== undefined, "snapshot() without saveSnapshot");
    this.snapshotWaiting = true;
    try {
      // The snapshot's index (the applied one) must not pass the commit index handed to storage
      // (compact asserts it). Entries may apply while this waits, on a commit not written yet:
      // the check that nothing is unwritten runs with no await between it and reading `applied`.
      for (let i = 0; ; i++) {
        assert(i < 10_000, "the applied index never stayed within the written commit");
        await this.hardStateWritten();
        if (this.stopped || (this.unsavedHardState === undefined && !this.savingHardState)) break;
      }
    } finally {
      this.snapshotWaiting = false;
    }
    if (this.stopped || this.compactingFlag) return;
    const index = this.applied;
    if (index < this.storage.firstIndex()) return; // already covered by the last snapshot
    const term = this.storage.term(index);
    assert(term !== undefined, `no term for the applied index ${index}`);
    const meta: SnapshotMeta = { index, term, confState: this.rawNode.raft.confState() };
    const data = this.sm.snapshot();
    this.compactingFlag = true;
    try {
      await save(meta, data);
      if (this.stopped) return;
      await this.storage.compact(meta);
    } finally {
      this.compactingFlag = false;
    }
  }

  get compacting(): boolean {
    return this.compactingFlag;
  }

  /** A persist was issued and its continuation has not run yet. */
  get persistInFlight(): boolean {
    return this.persisting !== undefined || this.pipelined > 0 || this.savingHardState;
  }

  /** Index the state machine reflects (status().smApplied, without building the status). */
  get appliedIndex(): number {
    return this.applied;
  }

  status(): NodeStatus {
    return {
      ...this.rawNode.status(),
      smApplied: this.applied,
      persisting: this.persisting !== undefined || this.pipelined > 0,
      pendingProposals: this.proposals.size,
      pendingReads: this.readQueue.length + [...this.readRounds.values()].reduce((n, r) => n + r.waiters.length, 0) + this.confirmedReads.reduce((n, r) => n + r.waiters.length, 0),
    };
  }

  /** Stops: waits for the write in flight, fails what is pending, closes transport and storage. */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = new NodeClosedError("node closed");
    this.transport.close();
    while ((this.persisting || this.pipelined > 0 || this.savingHardState) && !this.failed) await this.persistDone;
    // A graceful stop leaves the commit index it applied up to durable: the restart applies it all.
    const hs = this.unsavedHardState;
    this.unsavedHardState = undefined;
    if (hs !== undefined && !this.failed) await this.storage.persist({ hardState: hs, entries: [], snapshot: undefined }).catch((err: unknown) => this.fail(err));
    this.failAll(this.stopped);
    if (!this.failed) await this.storage.close();
  }

  // ---- the Ready loop ----

  private persistDone: Promise<void> = Promise.resolve();
  /** The Ready whose messages were sent before its persist (see maySendBeforePersist). */
  private sentEarly: Ready | undefined;
  /** Term and vote as last written (messages of a new term or vote wait for their write). */
  private writtenTerm = 0;
  private writtenVote = 0;

  /**
   * A leader's messages of a Ready may go before that Ready is durable when its term and vote are
   * already written: they carry entries and commit indexes, which followers persist themselves, and
   * the leader never counts its own entries before they are durable. Anything else (a candidate's
   * votes, a follower's acknowledgements, a new term) waits for the write.
   */
  private maySendBeforePersist(rd: Ready): boolean {
    const r = this.rawNode.raft;
    if (r.role !== "leader" || rd.snapshot) return false;
    if (r.term !== this.writtenTerm || r.vote !== this.writtenVote) return false;
    for (const m of rd.messages) if (m.term !== this.writtenTerm) return false;
    return true;
  }

  /** A hard state whose only change was the commit index, not yet written (see pump). */
  private unsavedHardState: HardState | undefined;
  /** The write of an unsaved hard state alone is in flight (see saveHardState). */
  private savingHardState = false;

  /**
   * On a tick with nothing else to write, the commit index that moved since the last write is
   * written alone: an idle node's durable commit trails what it applied by at most a tick.
   */
  private saveHardState(): void {
    const hs = this.unsavedHardState;
    if (hs === undefined || this.stopped || this.persisting || this.pipelined > 0 || this.savingHardState || this.pumping || this.finishing) return;
    if (this.rawNode.hasReady()) return; // the next Ready's write carries it
    this.unsavedHardState = undefined;
    this.savingHardState = true;
    this.persistDone = this.storage.persist({ hardState: hs, entries: [], snapshot: undefined }).then(
      () => {
        this.savingHardState = false;
        if (this.failed) return;
        this.pump();
      },
      (err: unknown) => this.fail(err),
    );
  }

  /** Resolves once every hard state produced so far was handed to storage (a snapshot needs commit >= its index there). */
  private async hardStateWritten(): Promise<void> {
    for (let i = 0; (this.unsavedHardState !== undefined || this.savingHardState) && !this.stopped; i++) {
      assert(i < 10_000, "the unsaved hard state was never written");
      this.saveHardState();
      await this.persistDone;
    }
  }

  private pump(): void {
    // `finishing`: an input made by a callback while a Ready is finished (a proposal or read from
    // the server as entries apply) waits for the loop, which resumes once that Ready is advanced.
    if (this.stopped || this.persisting || this.savingHardState || this.pumping || this.finishing) return;
    this.pumping = true;
    try {
      while (!this.stopped && !this.persisting && this.rawNode.hasReady()) {
        const rd = this.rawNode.ready();
        if (rd.hardState && !rd.mustSync && !rd.snapshot && rd.entries.length === 0) {
          // Only the commit index moved. It need not be durable before entries apply (an entry is
          // committed once a quorum holds it; a restart learns the commit again from the leader),
          // so it rides with the next write instead of costing an fdatasync of its own.
          this.unsavedHardState = rd.hardState;
          this.finish(rd);
          if (this.yieldAfter(rd)) return;
          continue;
        }
        if (rd.snapshot || rd.entries.length > 0 || rd.hardState) {
          const hardState = rd.hardState ?? this.unsavedHardState;
          this.unsavedHardState = undefined;
          if (this.mayPipeline(rd)) {
            // A leader's own entries: written while it goes on (sends them, applies what is
            // committed, takes the next Ready); it counts them toward a quorum once durable.
            if (rd.messages.length > 0) {
              this.transport.send(rd.messages);
              this.sentEarly = rd;
            }
            const last = rd.entries[rd.entries.length - 1]!;
            this.pipelined++;
            this.persistDone = this.storage.persist({ hardState, entries: rd.entries, snapshot: undefined }).then(
              () => this.afterPipelined(last.index, last.term),
              (err: unknown) => this.fail(err),
            );
            this.finish(rd, false);
            if (this.yieldAfter(rd)) return;
            continue;
          }
          if (rd.messages.length > 0 && this.maySendBeforePersist(rd)) {
            // A leader's appends go out while it writes the same entries (Raft thesis 10.2.1): it
            // counts itself toward a quorum only once its own write is durable.
            this.transport.send(rd.messages);
            this.sentEarly = rd;
          }
          this.persisting = rd;
          this.persistDone = this.storage.persist({ hardState, entries: rd.entries, snapshot: rd.snapshot }).then(
            () => this.afterPersist(rd, hardState),
            (err: unknown) => this.fail(err),
          );
          return;
        }
        this.finish(rd);
        if (this.yieldAfter(rd)) return;
      }
    } catch (err) {
      // An entry the state machine cannot apply (or a broken invariant) stops the node, as a
      // failure after a persist does, whichever input drove the loop.
      this.fail(err);
    } finally {
      this.pumping = false;
    }
  }

  private yieldScheduled = false;

  /**
   * After a Ready that applied entries, with more to do: with `yieldAfterApply` set, the loop goes
   * on in a later turn of the event loop (timers and sockets run in between: a large backlog must
   * not hold off heartbeats and elections). Returns true when the loop should stop now.
   */
  private yieldAfter(rd: Ready): boolean {
    const defer = this.cfg.yieldAfterApply;
    if (defer === undefined || rd.committedEntries.length === 0 || !this.rawNode.hasReady()) return false;
    if (!this.yieldScheduled) {
      this.yieldScheduled = true;
      defer(() => {
        this.yieldScheduled = false;
        this.pump();
      });
    }
    return true;
  }

  /**
   * A Ready whose persist may run while the loop goes on: a leader appending entries in a term and
   * vote already durable (as for maySendBeforePersist), with no classic persist in flight (its
   * Ready finishes only when durable, so later Readies wait for it anyway).
   */
  private mayPipeline(rd: Ready): boolean {
    if (this.cfg.pipelineAppends === false || this.persisting !== undefined) return false;
    if (rd.entries.length === 0 || rd.snapshot !== undefined) return false;
    return this.maySendBeforePersist(rd);
  }

  /** A pipelined append is durable: the leader counts its entries (in the order the Readies were taken). */
  private afterPipelined(index: number, term: number): void {
    this.pipelined--;
    assert(this.pipelined >= 0, "more pipelined appends completed than issued");
    if (this.failed) return;
    try {
      this.rawNode.persisted(index, term);
      this.pump();
    } catch (err) {
      this.fail(err);
    }
  }

  private afterPersist(rd: Ready, written: HardState | undefined): void {
    assert(this.persisting === rd, "persist completed out of order");
    this.persisting = undefined;
    if (written !== undefined) {
      this.writtenTerm = written.term;
      this.writtenVote = written.vote;
    }
    if (this.failed) return;
    // After close() began: the write is durable; finish it (sends go nowhere, applies are harmless).
    try {
      this.finish(rd);
      if (!this.yieldAfter(rd)) this.pump();
    } catch (err) {
      this.fail(err);
    }
  }

  private finishing = false;

  /** Send, restore, apply, advance, then settle proposals and reads. `entriesPersisted` false: see RawNode.advance. */
  private finish(rd: Ready, entriesPersisted = true): void {
    assert(!this.finishing, "finish() re-entered");
    this.finishing = true;
    try {
      this.finishReady(rd, entriesPersisted);
    } finally {
      this.finishing = false;
    }
  }

  private finishReady(rd: Ready, entriesPersisted: boolean): void {
    if (rd.messages.length > 0 && this.sentEarly !== rd) this.transport.send(rd.messages);
    if (this.sentEarly === rd) this.sentEarly = undefined;
    if (rd.snapshot) {
      const at = rd.snapshot.meta.index;
      assert(at > this.applied, `snapshot at ${at} not past applied ${this.applied}`);
      this.sm.restore(rd.snapshot);
      this.applied = at;
      for (const [index, p] of [...this.proposals]) {
        if (index <= at) {
          this.proposals.delete(index);
          rejectProposal(index, p, new UnknownOutcomeError(index));
        }
      }
    }
    for (const e of rd.committedEntries) this.applyEntry(e);
    this.rawNode.advance(rd, entriesPersisted);
    for (const rs of rd.readStates) {
      const round = this.readRounds.get(rs.requestCtx);
      // A round failed when leadership was seen lost may still be confirmed by a Ready built before.
      if (round === undefined) continue;
      this.readRounds.delete(rs.requestCtx);
      this.confirmedReads.push({ index: rs.index, waiters: round.waiters });
    }
    this.serveReads();
    this.settleLeadership();
    this.startReadRound();
    if (this.cfg.onApplied && (rd.committedEntries.length > 0 || rd.snapshot)) this.cfg.onApplied();
    const every = this.cfg.snapshotEntries ?? 0;
    if (every > 0 && !this.compactingFlag && this.applied - this.storage.firstIndex() + 1 >= every) void this.snapshot().catch((err: unknown) => this.fail(err));
  }

  private applyEntry(e: Entry): void {
    if (e.index !== this.applied + 1) assert(false, `applying ${e.index} after ${this.applied} (applied moves by one)`);
    const p = this.proposals.get(e.index);
    const mine = p !== undefined && p.term === e.term;
    const result = this.sm.apply(e, mine ? p.ctx : undefined);
    this.applied = e.index;
    if (p === undefined) return;
    this.proposals.delete(e.index);
    if (mine) p.resolve?.(result);
    else rejectProposal(e.index, p, new DroppedError(`overwritten by an entry of term ${e.term}`));
  }

  private serveReads(): void {
    if (this.confirmedReads.length === 0) return;
    const still: { index: number; waiters: Waiter[] }[] = [];
    for (const r of this.confirmedReads) {
      if (r.index <= this.applied) for (const w of r.waiters) w.resolve(r.index);
      else still.push(r);
    }
    this.confirmedReads = still;
  }

  /** Once this node no longer leads the term its requests were made in, their outcome is settled. */
  private settleLeadership(): void {
    const st = this.rawNode.raft;
    const leading = st.role === "leader";
    if (this.proposals.size > 0 && (!leading || st.term !== this.leaderTerm)) {
      // Kept, and answered when applied here in any role (applyEntry checks the term: an entry
      // overwritten by another leader's is DroppedError, not applied): entries known committed,
      // and after a transfer this node asked for, all of them (the target had them all when it
      // was told to campaign, so it leads with them). The others may or may not be applied later.
      this.failProposals(this.transferring ? Number.MAX_SAFE_INTEGER : st.log.committed);
    }
    this.transferring = leading && st.leadTransferee !== NONE;
    // A confirmed read stays safe (its index was committed when confirmed); an unconfirmed one is lost.
    for (const [ctx, round] of this.readRounds) {
      if (leading && st.term === round.term) continue;
      this.readRounds.delete(ctx);
      for (const w of round.waiters) w.reject(new NotLeaderError(st.lead));
    }
    if (!leading && this.readQueue.length > 0) {
      const q = this.readQueue;
      this.readQueue = [];
      for (const w of q) w.reject(new NotLeaderError(st.lead));
    }
  }

  /**
   * Starts a round for the reads queued, unless READ_ROUNDS_IN_FLIGHT_MAX rounds are unconfirmed
   * (then they join the next). Rounds overlap: a read waits for one heartbeat round trip, not for
   * the round before it as well.
   */
  private startReadRound(): void {
    if (this.stopped || this.readRounds.size >= READ_ROUNDS_IN_FLIGHT_MAX || this.readQueue.length === 0) return;
    const waiters = this.readQueue;
    this.readQueue = [];
    const ctx = `${this.cfg.readCtxPrefix ?? ""}${++this.readSeq}`;
    const r = this.rawNode.readIndex(ctx);
    if (r === "ok") {
      this.readRounds.set(ctx, { term: this.rawNode.raft.term, waiters });
      return;
    }
    const err = r === "not-leader" ? new NotLeaderError(this.rawNode.raft.lead) : new DroppedError(`read ${r}`);
    for (const w of waiters) w.reject(err);
  }

  /** Each pending proposal past `keepThrough` (committed: answered when applied) may or may not be applied later. */
  private failProposals(keepThrough = 0): void {
    const ps = [...this.proposals].filter(([index]) => index > keepThrough);
    for (const [index, p] of ps) {
      this.proposals.delete(index);
      rejectProposal(index, p, new UnknownOutcomeError(index));
    }
  }

  private failAll(err: Error): void {
    this.failProposals();
    const waiters = [...this.readQueue, ...[...this.readRounds.values()].flatMap((r) => r.waiters), ...this.confirmedReads.flatMap((r) => r.waiters)];
    this.readQueue = [];
    this.readRounds.clear();
    this.confirmedReads = [];
    for (const w of waiters) w.reject(err);
  }

  /** Storage failed or an invariant broke: the node stops taking part (the process should exit). */
  private fail(err: unknown): void {
    if (this.failed) return;
    const e = new NodeClosedError(`node stopped: ${err instanceof Error ? err.message : String(err)}`);
    this.failed = e;
    this.stopped = e;
    this.persisting = undefined;
    this.transport.close();
    this.failAll(e);
    if (this.cfg.onFatal) this.cfg.onFatal(err);
    else throw err;
  }
}
