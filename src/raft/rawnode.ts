// RawNode: the API the runtime drives — inputs (tick, step, propose, ...) and Ready batches out.
import { assert } from "../errors.ts";
import { Raft, type ProposeResult, type RaftConfig, type ReadIndexResult, type TransferResult } from "./raft.ts";
import {
  encodeConfChange,
  hardStateEqual,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  type Ready,
  type Role,
  type SoftState,
} from "./types.ts";

export interface Status {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly lead: NodeId;
  readonly role: Role;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly confState: ConfState;
  /**
   * Follower: ticks since the leader was last heard from, and the leader's commit index it reported.
   * A bounded-staleness follower read is safe to serve when role is follower, lead != 0,
   * leaderContactTicks <= the bound, and applied >= leaderCommit: the state is then no older than the
   * leader's as of that contact. (On the leader: 0 and its own commit.)
   */
  readonly leaderContactTicks: number;
  readonly leaderCommit: number;
}

/**
 * Usage, one loop per node (only the runtime has timers and I/O):
 *   every tick interval: rn.tick()
 *   on a peer message:   rn.step(msg)
 *   while (rn.hasReady()) { const rd = rn.ready(); persist(rd); send(rd.messages); apply(rd.committedEntries); rn.advance(rd); }
 * See `Ready` for the ordering rules.
 */
export class RawNode {
  readonly raft: Raft;
  private prevSoft: SoftState;
  private prevHard: HardState;
  private outstanding = false;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevSoft = { lead: this.raft.lead, role: this.raft.role };
    this.prevHard = this.raft.hardState();
  }

  /** Advances logical time by one tick (election and heartbeat timeouts count ticks). */
  tick(): void {
    this.raft.tick();
  }

  /** Feeds a message from a peer. Messages addressed elsewhere are a runtime bug. */
  step(m: Message): void {
    assert(m.to === this.raft.id, `message for ${m.to} stepped into ${this.raft.id}`);
    this.raft.step(m);
  }

  /** Leader only: appends `data` as a normal entry. The result names its (index, term): it is
   * acknowledged once an entry with that index AND term is applied; a different term there means lost. */
  propose(data: Uint8Array): ProposeResult {
    return this.raft.propose(data);
  }

  /** Leader only: appends several entries at once (the batching path). Returns the last index. */
  proposeBatch(datas: readonly Uint8Array[]): ProposeResult {
    return this.raft.proposeBatch(datas);
  }

  /** Leader only: single-server membership change; refused while another change is unapplied. */
  proposeMembershipChange(cc: ConfChange): ProposeResult {
    return this.raft.proposeConfChange(cc, encodeConfChange(cc));
  }

  /**
   * Leader only: asks for a linearizable read point. `requestCtx` must be unique per request and never
   * reused on retry. Its ReadState arrives in a later Ready once a quorum confirmed leadership after
   * this term's no-op committed. If leadership is lost first, it never arrives: the runtime fails the
   * read when softState shows this node is no longer leader, and the client retries with a new ctx.
   */
  readIndex(requestCtx: string): ReadIndexResult {
    return this.raft.readIndex(requestCtx);
  }

  /** Leader only: hands leadership to a voter (catches it up, then sends TimeoutNow). */
  transferLeadership(to: NodeId): TransferResult {
    return this.raft.transferLeadership(to);
  }

  /** Start an election now (tests and operator action). */
  campaign(): void {
    this.raft.hup(this.raft.preVote ? "pre-election" : "election");
  }

  /** The transport could not reach `id`: stop streaming to it optimistically. */
  reportUnreachable(id: NodeId): void {
    this.raft.reportUnreachable(id);
  }

  /** The transport finished (or failed) sending a snapshot to `id`. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.reportSnapshot(id, ok);
  }

  status(): Status {
    const r = this.raft;
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      lead: r.lead,
      role: r.role,
      commit: r.log.committed,
      applied: r.log.applied,
      lastIndex: r.log.lastIndex(),
      confState: r.confState(),
      leaderContactTicks: r.role === "leader" ? 0 : r.leaderContactElapsed,
      leaderCommit: r.role === "leader" ? r.log.committed : r.leaderCommit,
    };
  }

  hasReady(): boolean {
    const r = this.raft;
    if (r.bcastPending && r.role === "leader") return true;
    if (r.msgs.length > 0 || r.readStates.length > 0) return true;
    if (r.log.entriesToPersist().length > 0 || r.log.hasPendingSnapshot()) return true;
    if (r.log.hasNextCommittedEntries()) return true;
    if (r.lead !== this.prevSoft.lead || r.role !== this.prevSoft.role) return true;
    const hs = r.hardState();
    return !hardStateEqual(hs, this.prevHard);
  }

  /** Collects what the runtime must do; call advance(ready) when done before the next ready(). */
  ready(): Ready {
    assert(!this.outstanding, "ready() called again before advance()");
    const r = this.raft;
    if (r.bcastPending) {
      if (r.role === "leader") r.bcastAppend();
      else r.bcastPending = false;
    }
    const soft: SoftState = { lead: r.lead, role: r.role };
    const softChanged = soft.lead !== this.prevSoft.lead || soft.role !== this.prevSoft.role;
    const hs = r.hardState();
    const hardChanged = !hardStateEqual(hs, this.prevHard);
    const entries = r.log.entriesToPersist().slice();
    r.log.unstable.acceptInProgress();
    const snapshot = r.log.unstable.snapshot;
    const rd: Ready = {
      softState: softChanged ? soft : undefined,
      hardState: hardChanged ? hs : undefined,
      entries,
      snapshot,
      messages: r.msgs,
      committedEntries: r.log.nextCommittedEntries(),
      readStates: r.readStates,
      mustSync: entries.length > 0 || hs.term !== this.prevHard.term || hs.vote !== this.prevHard.vote,
    };
    r.msgs = [];
    r.readStates = [];
    if (softChanged) this.prevSoft = soft;
    if (hardChanged) this.prevHard = hs;
    this.outstanding = true;
    return rd;
  }

  /**
   * The runtime persisted, sent and applied `rd`. With `entriesPersisted` false, its entries are
   * still being written (a leader persisting its entries while it goes on): the runtime calls
   * persisted() for them once their write is durable, in the order the Readies were taken.
   */
  advance(rd: Ready, entriesPersisted = true): void {
    assert(this.outstanding, "advance() without ready()");
    this.outstanding = false;
    const r = this.raft;
    if (rd.snapshot) r.onSnapshotInstalled(rd.snapshot.meta.index);
    const last = rd.entries[rd.entries.length - 1] as Entry | undefined;
    if (last && entriesPersisted) r.onPersisted(last.index, last.term);
    if (rd.committedEntries.length > 0) r.onApplied(rd.committedEntries);
  }

  /** Entries up to (index, term), handed out by an earlier ready() and advanced unpersisted, are durable. */
  persisted(index: number, term: number): void {
    this.raft.onPersisted(index, term);
  }
}
