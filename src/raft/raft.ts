// The Raft protocol as a pure state machine: step(msg) and tick() in, messages and log changes out.
import { assert, assertNever } from "../errors.ts";
import { RaftLog } from "./log.ts";
import { Progress } from "./progress.ts";
import { committedIndex, quorumSize, voteResult, type VoteResult } from "./quorum.ts";
import type { Rand } from "./rand.ts";
import type { LogStorage } from "./storage.ts";
import {
  NONE,
  decodeConfChange,
  isEmptyHardState,
  type AppendMsg,
  type AppendRespMsg,
  type ConfChange,
  type ConfState,
  type Entry,
  type EntryType,
  type HardState,
  type HeartbeatMsg,
  type HeartbeatRespMsg,
  type Message,
  type NodeId,
  type ReadState,
  type Role,
  type SnapshotMsg,
  type VoteMsg,
  type VoteRespMsg,
} from "./types.ts";

export interface RaftConfig {
  id: NodeId;
  storage: LogStorage;
  /** Seeded source for randomized election timeouts. */
  rand: Rand;
  /** Follower/candidate timeout base; the actual timeout is uniform in [electionTicks, 2*electionTicks). */
  electionTicks?: number;
  heartbeatTicks?: number;
  /** Index the state machine already reflects at start (e.g., restored from a snapshot). */
  applied?: number;
  /** Replicate state: at most this many append messages in flight to one follower. */
  inflightMessagesMax?: number;
  /** Byte budget for the entries of one append message (always at least one entry). */
  msgBytesMax?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  /** Leader: refuse proposals ("busy") while this many entries are appended but not committed. */
  uncommittedEntriesMax?: number;
  /** Leader: refuse ReadIndex requests ("busy") while this many are waiting for confirmation. */
  pendingReadsMax?: number;
  /**
   * Byte budget of the committed entries one Ready hands out to apply (always at least one entry;
   * the rest come in the next Ready): a runtime applying a large backlog can yield in between.
   */
  committedBytesPerReadyMax?: number;
  /**
   * For leader leases (lease-based reads): for one election timeout after this node starts, it
   * refuses votes (pre-votes too) for other candidates, as it does while it hears from a leader, so
   * a restart does not erase its promise to the leader it acknowledged just before (needs checkQuorum).
   */
  refuseVotesAtStart?: boolean;
}

export const ELECTION_TICKS_DEFAULT = 10;
export const HEARTBEAT_TICKS_DEFAULT = 1;
export const INFLIGHT_MESSAGES_MAX_DEFAULT = 256;
export const MSG_BYTES_MAX_DEFAULT = 1024 * 1024;
export const UNCOMMITTED_ENTRIES_MAX_DEFAULT = 1 << 20;
export const PENDING_READS_MAX_DEFAULT = 1 << 16;

export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | {
      readonly ok: false;
      readonly reason: "not-leader" | "transfer-in-progress" | "pending-conf-change" | "invalid-conf-change" | "busy";
    };

export type ReadIndexResult = "ok" | "not-leader" | "duplicate" | "busy";
export type TransferResult = "ok" | "not-leader" | "not-a-voter" | "self";

type CampaignKind = "pre-election" | "election" | "transfer";

/** Pending ReadIndex requests: each waits for a quorum of heartbeat acks tagged with its context. */
class ReadOnly {
  private readonly pending = new Map<string, { index: number; acks: Set<NodeId> }>();
  private queue: string[] = [];

  has(ctx: string): boolean {
    return this.pending.has(ctx);
  }

  get size(): number {
    return this.pending.size;
  }

  add(index: number, ctx: string, self: NodeId): void {
    this.pending.set(ctx, { index, acks: new Set([self]) });
    this.queue.push(ctx);
  }

  /** Records an ack; returns the set of voters that acked ctx, or undefined if unknown. */
  recvAck(from: NodeId, ctx: string): Set<NodeId> | undefined {
    const p = this.pending.get(ctx);
    if (!p) return undefined;
    p.acks.add(from);
    return p.acks;
  }

  /** Releases every request up to and including ctx: a later confirmation covers earlier requests. */
  advance(ctx: string): ReadState[] {
    const at = this.queue.indexOf(ctx);
    if (at < 0) return [];
    const done = this.queue.slice(0, at + 1);
    this.queue = this.queue.slice(at + 1);
    const out: ReadState[] = [];
    for (const c of done) {
      const p = this.pending.get(c);
      assert(p !== undefined, "read-only queue out of sync");
      this.pending.delete(c);
      out.push({ index: p.index, requestCtx: c });
    }
    return out;
  }

  lastPendingCtx(): string {
    return this.queue.length > 0 ? (this.queue[this.queue.length - 1] as string) : "";
  }

  reset(): void {
    this.pending.clear();
    this.queue = [];
  }
}

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  role: Role = "follower";
  readonly log: RaftLog;
  readonly prs = new Map<NodeId, Progress>();
  voters = new Set<NodeId>();
  learners = new Set<NodeId>();
  private readonly votes = new Map<NodeId, boolean>();
  /** Outbox, drained by RawNode.ready(). */
  msgs: Message[] = [];
  /** Reads that became safe, drained by RawNode.ready(). */
  readStates: ReadState[] = [];

  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  private readonly inflightMessagesMax: number;
  private readonly uncommittedEntriesMax: number;
  private readonly pendingReadsMax: number;
  private readonly rand: Rand;
  electionElapsed = 0;
  private heartbeatElapsed = 0;
  /** Follower: the highest commit index the current leader has reported (for staleness bounds). */
  leaderCommit = 0;
  /** Follower: ticks since a message from the current leader last arrived. */
  leaderContactElapsed = 0;
  randomizedElectionTimeout = 0;
  leadTransferee: NodeId = NONE;
  /** Index of the last conf-change entry that may be unapplied; a new change waits until applied >= it. */
  pendingConfIndex = 0;
  private readonly readOnly = new ReadOnly();
  /** ReadIndex requests received before this term's first commit (the no-op): served after it. */
  private pendingReads: string[] = [];
  /** New entries or a commit advance to broadcast at the next ready() (batches many proposals). */
  bcastPending = false;
  /** Ticks left of the quiet window after start (RaftConfig.refuseVotesAtStart). */
  private startQuietTicks = 0;

  constructor(c: RaftConfig) {
    assert(c.id !== NONE, "node id must be non-zero");
    this.id = c.id;
    this.rand = c.rand;
    this.electionTicks = c.electionTicks ?? ELECTION_TICKS_DEFAULT;
    this.heartbeatTicks = c.heartbeatTicks ?? HEARTBEAT_TICKS_DEFAULT;
    assert(this.heartbeatTicks > 0 && this.electionTicks > this.heartbeatTicks, "need electionTicks > heartbeatTicks > 0");
    this.preVote = c.preVote ?? true;
    this.checkQuorum = c.checkQuorum ?? true;
    this.startQuietTicks = c.refuseVotesAtStart === true ? this.electionTicks : 0;
    this.inflightMessagesMax = c.inflightMessagesMax ?? INFLIGHT_MESSAGES_MAX_DEFAULT;
    this.uncommittedEntriesMax = c.uncommittedEntriesMax ?? UNCOMMITTED_ENTRIES_MAX_DEFAULT;
    this.pendingReadsMax = c.pendingReadsMax ?? PENDING_READS_MAX_DEFAULT;
    this.log = new RaftLog(c.storage, c.msgBytesMax ?? MSG_BYTES_MAX_DEFAULT, c.committedBytesPerReadyMax ?? Number.MAX_SAFE_INTEGER);
    const { hardState, confState } = c.storage.initialState();
    this.applyConfState(confState);
    if (!isEmptyHardState(hardState)) this.loadState(hardState);
    if (c.applied !== undefined && c.applied > 0) this.log.appliedTo(c.applied);
    this.becomeFollower(this.term, NONE);
  }

  private loadState(hs: HardState): void {
    // A snapshot holds only committed entries, so the commit index is at least its index even if the
    // hard state written after the snapshot was lost in a crash.
    const commit = Math.max(hs.commit, this.log.committed);
    assert(commit <= this.log.lastIndex(), `hard state commit ${commit} past last index ${this.log.lastIndex()}`);
    this.log.committed = commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  confState(): ConfState {
    return { voters: [...this.voters].sort((a, b) => a - b), learners: [...this.learners].sort((a, b) => a - b) };
  }

  /** Can this node become leader? Only voters campaign. */
  promotable(): boolean {
    return this.voters.has(this.id);
  }

  private send(m: Message): void {
    this.msgs.push(m);
  }

  // ---- role changes (the only place the role changes) ----

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = NONE;
      // Messages of an older term that are still queued describe a state we have left (e.g., an ack
      // for entries a newer leader has since overwritten in memory): sending them after the next
      // persist would be a lie. Dropping them is always safe; the network may lose them anyway.
      this.msgs = this.msgs.filter((m) => m.term >= term);
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.leaderCommit = 0;
    this.leaderContactElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.leadTransferee = NONE;
    this.votes.clear();
    const last = this.log.lastIndex();
    for (const [id, pr] of this.prs) {
      const fresh = new Progress(last + 1, this.inflightMessagesMax, pr.isLearner);
      if (id === this.id) {
        fresh.match = this.log.lastStableIndex();
        fresh.recentActive = true;
      }
      this.prs.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.readOnly.reset();
    this.pendingReads = [];
    this.bcastPending = false;
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTicks + this.rand.int(this.electionTicks);
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.role = "follower";
  }

  private becomePreCandidate(): void {
    assert(this.role !== "leader", "leader cannot become pre-candidate");
    // Pre-vote changes neither term nor vote: a partitioned node cannot inflate terms.
    this.votes.clear();
    this.lead = NONE;
    this.resetRandomizedElectionTimeout();
    this.role = "pre-candidate";
  }

  private becomeCandidate(): void {
    assert(this.role !== "leader", "leader cannot become candidate");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  private becomeLeader(): void {
    assert(this.role === "candidate", `${this.role} cannot become leader`);
    this.reset(this.term);
    this.lead = this.id;
    this.role = "leader";
    const self = this.prs.get(this.id);
    assert(self !== undefined, "leader has no progress for itself");
    self.becomeReplicate();
    self.match = this.log.lastStableIndex();
    self.next = this.log.lastIndex() + 1;
    // The no-op lets the leader commit (and so learn the commit index of) everything before its term.
    const noop = this.appendEntries([{ type: "normal", data: EMPTY }]);
    // Conf changes already in the log may be unapplied; the next change waits for them and for the
    // no-op (a leader changes membership only after committing an entry of its own term).
    this.pendingConfIndex = noop;
  }

  // ---- input: ticks ----

  tick(): void {
    if (this.startQuietTicks > 0) this.startQuietTicks--;
    if (this.role === "leader") this.tickLeader();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    this.leaderContactElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(this.preVote ? "pre-election" : "election");
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      if (this.checkQuorum && !this.quorumActive()) {
        // Check-quorum: a leader cut off from a majority for an election timeout steps down.
        this.becomeFollower(this.term, NONE);
        return;
      }
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.leadTransferee !== NONE) this.leadTransferee = NONE;
    }
    for (const [id, pr] of this.prs) {
      if (id !== this.id && pr.state === "snapshot" && ++pr.snapshotTicks >= 2 * this.electionTicks) {
        pr.becomeProbe(); // the snapshot (or its answer) was probably lost: probe again
      }
    }
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.readOnly.lastPendingCtx());
    }
  }

  /** Voters heard from in the last election timeout (self included) form a quorum. Resets the window. */
  private quorumActive(): boolean {
    let active = 0;
    for (const id of this.voters) {
      const pr = this.prs.get(id);
      if (id === this.id || pr?.recentActive) active++;
    }
    for (const [id, pr] of this.prs) if (id !== this.id) pr.recentActive = false;
    return active >= quorumSize(this.voters.size);
  }

  // ---- elections ----

  /** Start an election (used by tick, TimeoutNow, and tests). */
  hup(kind: CampaignKind): void {
    if (this.role === "leader") return;
    if (!this.promotable()) return;
    // A committed but unapplied conf change may mean our membership view is stale: do not campaign.
    if (this.hasUnappliedConfChanges()) return;
    this.campaign(kind);
  }

  private hasUnappliedConfChanges(): boolean {
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    if (lo > this.log.committed) return false;
    for (const e of this.log.slice(lo, this.log.committed + 1, Number.MAX_SAFE_INTEGER)) {
      if (e.type === "conf-change") return true;
    }
    return false;
  }

  private campaign(kind: CampaignKind): void {
    let term: number;
    let type: VoteMsg["type"];
    if (kind === "pre-election") {
      this.becomePreCandidate();
      type = "pre-vote";
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      type = "vote";
      term = this.term;
    }
    if (this.poll(this.id, true) === "won") {
      // Single voter: the election is won at once.
      if (kind === "pre-election") this.campaign("election");
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.voters) {
      if (id === this.id) continue;
      this.send({ type, from: this.id, to: id, term, lastIndex, lastTerm, transfer: kind === "transfer" });
    }
  }

  private poll(id: NodeId, granted: boolean): VoteResult {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    return voteResult(this.voters, this.votes);
  }

  // ---- input: messages ----

  step(m: Message): void {
    if (m.term > this.term) {
      if (m.type === "vote" || m.type === "pre-vote") {
        // Leader lease (check-quorum): while we hear from a leader, ignore disruptive candidates,
        // unless the campaign was asked for by that leader (transfer).
        const inLease = this.checkQuorum && ((this.lead !== NONE && this.electionElapsed < this.electionTicks) || this.startQuietTicks > 0);
        if (inLease && !m.transfer) return;
      }
      if (m.type === "pre-vote") {
        // A pre-vote at a future term does not move our term.
      } else if (m.type === "pre-vote-resp" && !m.reject) {
        // A granted pre-vote echoes the term we would campaign at; we bump it when we campaign.
      } else if (m.type === "append" || m.type === "heartbeat" || m.type === "snapshot") {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === "heartbeat" || m.type === "append")) {
        // A stale leader (e.g., isolated with check-quorum peers ignoring it) learns our term and steps down.
        this.send({ type: "append-resp", from: this.id, to: m.from, term: this.term, index: 0, reject: false, rejectHint: 0, hintTerm: 0 });
      } else if (m.type === "pre-vote") {
        this.send({ type: "pre-vote-resp", from: this.id, to: m.from, term: this.term, reject: true });
      }
      return;
    }

    switch (m.type) {
      case "vote":
      case "pre-vote":
        this.handleVoteRequest(m);
        return;
      case "append":
      case "append-resp":
      case "vote-resp":
      case "pre-vote-resp":
      case "heartbeat":
      case "heartbeat-resp":
      case "snapshot":
      case "timeout-now":
        break;
      default:
        assertNever(m, "message");
    }
    switch (this.role) {
      case "leader":
        this.stepLeader(m);
        return;
      case "candidate":
      case "pre-candidate":
        this.stepCandidate(m);
        return;
      case "follower":
        this.stepFollower(m);
        return;
      default:
        assertNever(this.role, "role");
    }
  }

  private handleVoteRequest(m: VoteMsg): void {
    const respType = m.type === "vote" ? "vote-resp" : "pre-vote-resp";
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.lead === NONE) ||
      (m.type === "pre-vote" && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.lastIndex, m.lastTerm)) {
      this.send({ type: respType, from: this.id, to: m.from, term: m.term, reject: false });
      if (m.type === "vote") {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, from: this.id, to: m.from, term: this.term, reject: true });
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case "append-resp":
        this.handleAppendResp(m);
        return;
      case "heartbeat-resp":
        this.handleHeartbeatResp(m);
        return;
      case "append":
      case "heartbeat":
      case "snapshot":
        assert(false, `two leaders in term ${this.term}: ${this.id} and ${m.from}`);
        return;
      case "vote":
      case "pre-vote":
      case "vote-resp":
      case "pre-vote-resp":
      case "timeout-now":
        return;
      default:
        assertNever(m, "message");
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case "append":
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case "heartbeat":
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case "snapshot":
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case "vote-resp":
      case "pre-vote-resp":
        this.handleVoteResp(m);
        return;
      case "append-resp":
      case "heartbeat-resp":
      case "vote":
      case "pre-vote":
      case "timeout-now":
        return;
      default:
        assertNever(m, "message");
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case "append":
        this.electionElapsed = 0;
        this.leaderContactElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        return;
      case "heartbeat":
        this.electionElapsed = 0;
        this.leaderContactElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case "snapshot":
        this.electionElapsed = 0;
        this.leaderContactElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case "timeout-now":
        // The leader asked us to take over: campaign at once, skipping pre-vote.
        this.hup("transfer");
        return;
      case "append-resp":
      case "heartbeat-resp":
      case "vote":
      case "pre-vote":
      case "vote-resp":
      case "pre-vote-resp":
        return;
      default:
        assertNever(m, "message");
    }
  }

  private handleVoteResp(m: VoteRespMsg): void {
    const expected = this.role === "pre-candidate" ? "pre-vote-resp" : "vote-resp";
    if (m.type !== expected) return;
    const result = this.poll(m.from, !m.reject);
    if (result === "won") {
      if (this.role === "pre-candidate") this.campaign("election");
      else {
        this.becomeLeader();
        this.bcastAppend();
      }
    } else if (result === "lost") {
      this.becomeFollower(this.term, NONE);
    }
  }

  // ---- follower side ----

  private handleAppend(m: AppendMsg): void {
    this.leaderCommit = Math.max(this.leaderCommit, m.commit);
    if (m.logIndex < this.log.committed) {
      this.sendAppendResp(m.from, this.log.committed, false, 0, 0);
      return;
    }
    const last = this.log.maybeAppend(m.logIndex, m.logTerm, m.commit, m.entries);
    if (last !== undefined) {
      this.sendAppendResp(m.from, last, false, 0, 0);
      return;
    }
    // Fast backtracking: skip every entry of ours whose term exceeds the leader's logTerm at logIndex.
    const hint = this.log.findConflictByTerm(Math.min(m.logIndex, this.log.lastIndex()), m.logTerm);
    const hintTerm = this.log.term(hint) ?? 0;
    this.sendAppendResp(m.from, m.logIndex, true, hint, hintTerm);
  }

  private sendAppendResp(to: NodeId, index: number, reject: boolean, rejectHint: number, hintTerm: number): void {
    this.send({ type: "append-resp", from: this.id, to, term: this.term, index, reject, rejectHint, hintTerm });
  }

  private handleHeartbeat(m: HeartbeatMsg): void {
    this.log.commitTo(m.commit);
    this.leaderCommit = Math.max(this.leaderCommit, m.leaderCommit);
    this.send({ type: "heartbeat-resp", from: this.id, to: m.from, term: this.term, ctx: m.ctx });
  }

  private handleSnapshot(m: SnapshotMsg): void {
    const s = m.snapshot;
    if (this.restore(s)) this.sendAppendResp(m.from, this.log.lastIndex(), false, 0, 0);
    else this.sendAppendResp(m.from, this.log.committed, false, 0, 0);
  }

  /** Installs a snapshot newer than our commit; returns false if it brings nothing new. */
  private restore(s: SnapshotMsg["snapshot"]): boolean {
    if (s.meta.index <= this.log.committed) return false;
    assert(this.role === "follower", "only a follower installs a snapshot");
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // We already have the entry: just fast-forward the commit index.
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    this.applyConfState(s.meta.confState);
    return true;
  }

  // ---- leader side ----

  private handleAppendResp(m: AppendRespMsg): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (m.reject) {
      let nextProbe = m.rejectHint;
      if (m.hintTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.hintTerm);
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    switch (pr.state) {
      case "probe":
        pr.becomeReplicate();
        break;
      case "snapshot":
        if (pr.match >= pr.pendingSnapshot) {
          pr.becomeProbe();
          pr.becomeReplicate();
        }
        break;
      case "replicate":
        pr.inflights.freeLE(m.index);
        break;
      default:
        assertNever(pr.state, "progress state");
    }
    if (this.maybeCommit()) {
      this.bcastPending = true;
    } else if (wasPaused) {
      this.sendAppend(m.from, false);
    }
    // Stream what remains, as flow control allows.
    while (this.maybeSendAppend(m.from, false)) {
      /* keep sending */
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResp(m: HeartbeatRespMsg): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    pr.probeSent = false;
    // A lost append must not stall replicate forever: free a slot when a heartbeat proves liveness.
    if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirstOne();
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, true);
    if (m.ctx === "") return;
    const acks = this.readOnly.recvAck(m.from, m.ctx);
    if (!acks) return;
    let voterAcks = 0;
    for (const id of acks) if (this.voters.has(id)) voterAcks++;
    if (voterAcks >= quorumSize(this.voters.size)) {
      for (const rs of this.readOnly.advance(m.ctx)) this.readStates.push(rs);
    }
  }

  /** Sends entries (or a snapshot) to a follower if flow control allows. Returns whether it sent. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.prs.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const ents = prevTerm === undefined ? undefined : this.log.entriesFrom(pr.next, this.log.maxMsgBytes);
    if (prevTerm === undefined || ents === undefined) {
      // What the follower needs is compacted: send the snapshot instead.
      if (!pr.recentActive) return false;
      const snapshot = this.log.snapshot();
      this.send({ type: "snapshot", from: this.id, to, term: this.term, snapshot });
      pr.becomeSnapshot(snapshot.meta.index);
      return true;
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send({ type: "append", from: this.id, to, term: this.term, logIndex: prevIndex, logTerm: prevTerm, entries: ents, commit: this.log.committed });
    switch (pr.state) {
      case "replicate":
        if (ents.length > 0) {
          const last = (ents[ents.length - 1] as Entry).index;
          pr.optimisticUpdate(last);
          pr.inflights.add(last);
        }
        break;
      case "probe":
        pr.probeSent = true;
        break;
      case "snapshot":
        assert(false, "append sent in snapshot state");
        break;
      default:
        assertNever(pr.state, "progress state");
    }
    return true;
  }

  private sendAppend(to: NodeId, sendIfEmpty: boolean): void {
    this.maybeSendAppend(to, sendIfEmpty);
  }

  bcastAppend(): void {
    this.bcastPending = false;
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      if (!this.maybeSendAppend(id, true)) continue;
      // Stream the rest of the backlog as the window allows (entries may span several messages).
      while (pr.state === "replicate" && this.maybeSendAppend(id, false)) {
        /* keep sending */
      }
    }
  }

  private bcastHeartbeat(ctx: string): void {
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      // Never tell a follower to commit past what it is known to hold.
      const commit = Math.min(pr.match, this.log.committed);
      this.send({ type: "heartbeat", from: this.id, to: id, term: this.term, commit, leaderCommit: this.log.committed, ctx });
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: "timeout-now", from: this.id, to, term: this.term });
  }

  private selfMatch(): number {
    return this.log.lastStableIndex();
  }

  /** Advances commit to what a quorum of voters holds durably, if that entry is of our term. */
  private maybeCommit(): boolean {
    const mci = committedIndex(this.voters, (id) => (id === this.id ? this.selfMatch() : (this.prs.get(id)?.match ?? 0)));
    if (!this.log.maybeCommit(mci, this.term)) return false;
    if (this.pendingReads.length > 0 && this.committedEntryInCurrentTerm()) {
      const reads = this.pendingReads;
      this.pendingReads = [];
      for (const ctx of reads) this.doReadIndex(ctx);
    }
    return true;
  }

  committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  private appendEntries(es: readonly { type: EntryType; data: Uint8Array }[]): number {
    let index = this.log.lastIndex();
    const ents: Entry[] = [];
    for (const e of es) ents.push({ index: ++index, term: this.term, type: e.type, data: e.data });
    this.log.append(ents);
    this.bcastPending = true;
    return index;
  }

  // ---- local requests (via RawNode) ----

  /** Why a proposal of `count` entries cannot be taken now, if it cannot. */
  private refuseProposal(count: number): ProposeResult | undefined {
    if (this.role !== "leader") return { ok: false, reason: "not-leader" };
    if (this.leadTransferee !== NONE) return { ok: false, reason: "transfer-in-progress" };
    // Without a quorum nothing commits: bound the log instead of growing it forever.
    if (this.log.lastIndex() - this.log.committed + count > this.uncommittedEntriesMax) return { ok: false, reason: "busy" };
    return undefined;
  }

  propose(data: Uint8Array): ProposeResult {
    const refused = this.refuseProposal(1);
    if (refused) return refused;
    const index = this.appendEntries([{ type: "normal", data }]);
    return { ok: true, index, term: this.term };
  }

  /** Appends a batch of proposals; all or none. */
  proposeBatch(datas: readonly Uint8Array[]): ProposeResult {
    const refused = this.refuseProposal(datas.length);
    if (refused) return refused;
    const index = this.appendEntries(datas.map((data) => ({ type: "normal" as const, data })));
    return { ok: true, index, term: this.term };
  }

  proposeConfChange(cc: ConfChange, data: Uint8Array): ProposeResult {
    const refused = this.refuseProposal(1);
    if (refused) return refused;
    // One change at a time, and not before this term's no-op is applied (the single-server change fix).
    if (this.pendingConfIndex > this.log.applied) return { ok: false, reason: "pending-conf-change" };
    switch (cc.type) {
      case "add-voter":
        if (this.voters.has(cc.node)) return { ok: false, reason: "invalid-conf-change" };
        break;
      case "add-learner":
        if (this.learners.has(cc.node)) return { ok: false, reason: "invalid-conf-change" };
        break;
      case "remove-node":
        if (!this.voters.has(cc.node) && !this.learners.has(cc.node)) return { ok: false, reason: "invalid-conf-change" };
        if (this.voters.has(cc.node) && this.voters.size === 1) return { ok: false, reason: "invalid-conf-change" };
        break;
      default:
        assertNever(cc.type, "conf change type");
    }
    if (cc.type === "add-learner" && this.voters.has(cc.node) && this.voters.size === 1) {
      return { ok: false, reason: "invalid-conf-change" };
    }
    const index = this.appendEntries([{ type: "conf-change", data }]);
    this.pendingConfIndex = index;
    return { ok: true, index, term: this.term };
  }

  readIndex(ctx: string): ReadIndexResult {
    if (this.role !== "leader") return "not-leader";
    if (this.readOnly.has(ctx) || this.pendingReads.includes(ctx)) return "duplicate";
    if (this.readOnly.size + this.pendingReads.length >= this.pendingReadsMax) return "busy";
    if (!this.committedEntryInCurrentTerm()) {
      // Until the no-op of this term commits we do not know the true commit index.
      this.pendingReads.push(ctx);
      return "ok";
    }
    this.doReadIndex(ctx);
    return "ok";
  }

  private doReadIndex(ctx: string): void {
    if (this.voters.size === 1 && this.voters.has(this.id)) {
      this.readStates.push({ index: this.log.committed, requestCtx: ctx });
      return;
    }
    this.readOnly.add(this.log.committed, ctx, this.id);
    this.bcastHeartbeat(ctx);
  }

  transferLeadership(to: NodeId): TransferResult {
    if (this.role !== "leader") return "not-leader";
    if (to === this.id) return "self";
    if (!this.voters.has(to)) return "not-a-voter";
    if (this.leadTransferee === to) return "ok";
    this.leadTransferee = to;
    // The transfer must finish within an election timeout, or it is abandoned (see tickLeader).
    this.electionElapsed = 0;
    const pr = this.prs.get(to);
    assert(pr !== undefined, "voter without progress");
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to, true);
    return "ok";
  }

  reportUnreachable(id: NodeId): void {
    const pr = this.prs.get(id);
    if (this.role === "leader" && pr && pr.state === "replicate") pr.becomeProbe();
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    const pr = this.prs.get(id);
    if (this.role !== "leader" || !pr || pr.state !== "snapshot") return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for a heartbeat response before probing again.
    pr.probeSent = true;
  }

  // ---- feedback from the runtime (via RawNode.advance) ----

  /** Entries up to (index, term) are durable. The leader counts itself only for durable entries. */
  onPersisted(index: number, term: number): void {
    this.log.stableTo(index, term);
    if (this.role === "leader" && this.maybeCommit()) this.bcastPending = true;
  }

  onSnapshotInstalled(index: number): void {
    this.log.stableSnapTo(index);
    if (index > this.log.applied) this.log.applied = index;
  }

  /** The application applied committed entries up to `index`; conf changes among them take effect now. */
  onApplied(entries: readonly Entry[]): void {
    for (const e of entries) {
      if (e.type === "conf-change") this.applyConfChange(decodeConfChange(e.data));
    }
    const last = entries[entries.length - 1];
    if (last) this.log.appliedTo(last.index);
  }

  applyConfChange(cc: ConfChange): void {
    const last = this.log.lastIndex();
    switch (cc.type) {
      case "add-voter":
        this.learners.delete(cc.node);
        this.voters.add(cc.node);
        this.ensureProgress(cc.node, false, last);
        break;
      case "add-learner":
        this.voters.delete(cc.node);
        this.learners.add(cc.node);
        this.ensureProgress(cc.node, true, last);
        break;
      case "remove-node":
        this.voters.delete(cc.node);
        this.learners.delete(cc.node);
        this.prs.delete(cc.node);
        break;
      default:
        assertNever(cc.type, "conf change type");
    }
    if (this.leadTransferee !== NONE && !this.voters.has(this.leadTransferee)) this.leadTransferee = NONE;
    if (this.role === "leader") {
      if (!this.voters.has(this.id)) {
        // Removed (or demoted): stop leading; the remaining voters elect a leader among themselves.
        this.becomeFollower(this.term, NONE);
      } else if (this.maybeCommit()) {
        this.bcastPending = true;
      }
    }
  }

  private ensureProgress(id: NodeId, isLearner: boolean, last: number): void {
    const pr = this.prs.get(id);
    if (pr) {
      pr.isLearner = isLearner;
      return;
    }
    const fresh = new Progress(last + 1, this.inflightMessagesMax, isLearner);
    if (id === this.id) fresh.match = this.log.lastStableIndex();
    fresh.recentActive = true; // give a new member one check-quorum window to answer
    this.prs.set(id, fresh);
  }

  private applyConfState(cs: ConfState): void {
    this.voters = new Set(cs.voters);
    this.learners = new Set(cs.learners);
    for (const id of [...this.prs.keys()]) {
      if (!this.voters.has(id) && !this.learners.has(id)) this.prs.delete(id);
    }
    const last = this.log.lastIndex();
    for (const id of this.voters) this.ensureProgress(id, false, last);
    for (const id of this.learners) this.ensureProgress(id, true, last);
  }
}

const EMPTY = new Uint8Array(0);
