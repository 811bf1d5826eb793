// The leader's lease, for lease-based reads (`kv serve --lease-reads`, off by default): a leader
// serves a linearizable read from its own state, without a ReadIndex round, while it holds a lease.
//
// Why a lease holds: a follower that heard from its leader refuses votes for other candidates for
// an election timeout (check-quorum, src/raft/raft.ts; for one election timeout after a restart
// too: RaftConfig.refuseVotesAtStart), and does not campaign itself sooner. So once a quorum of the
// voters acknowledged a heartbeat the leader sent at time S, no other leader can be elected, and so
// nothing can be committed elsewhere, before S + election timeout on those followers' clocks. The
// lease is that window shortened by the clock-drift bound: the leader holds it until
// S + (election timeout - drift) on its own monotonic clock (performance.now(): a paused or stalled
// leader sees the time that passed, unlike its Raft ticks).
//
// How acknowledgements are tied to send times without changing the wire format: every heartbeat
// carries a context its answer echoes (ReadIndex uses it). A heartbeat the core sends with no
// context gets a unique lease context here, put back to "" before the answer reaches the core; the
// first send time of every context is kept, so an answer proves its voter heard the leader at or
// after that time. A transfer of leadership ends the lease for the rest of the term (the target
// campaigns at once, without waiting for an election timeout).
import type { Message, NodeId } from "../raft/types.ts";
import { assert } from "../errors.ts";

/** Prefix of the lease contexts (read contexts never start with a control character). */
export const LEASE_CTX_PREFIX = "\u0001lease.";
/** Most heartbeat contexts remembered (oldest dropped first): a few election timeouts' worth. */
const SENT_CONTEXTS_MAX = 4096;

export class LeaderLease {
  private term = -1;
  private revokedTerm = -1;
  private seq = 0;
  /** First send time of each heartbeat context sent in `term`, oldest first. */
  private readonly sentAt = new Map<string, number>();
  /** Per member: the latest send time among the heartbeats of `term` it acknowledged. */
  private readonly acked = new Map<NodeId, number>();

  constructor(readonly leaseMs: number) {
    assert(leaseMs > 0, `lease of ${leaseMs} ms`);
  }

  private enter(term: number): void {
    if (term === this.term) return;
    this.term = term;
    this.sentAt.clear();
    this.acked.clear();
  }

  /**
   * Messages a node hands its transport at `now`: heartbeats without a context get this batch's lease
   * context (one per broadcast), and every heartbeat context's first send time is kept.
   */
  outgoing(msgs: readonly Message[], now: number): readonly Message[] {
    let out: Message[] | undefined;
    let token: string | undefined;
    for (let i = 0; i < msgs.length; i++) {
      const m = msgs[i] as Message;
      if (m.type !== "heartbeat") continue;
      if (m.term < this.term) continue;
      this.enter(m.term);
      let ctx = m.ctx;
      if (ctx === "") {
        token ??= `${LEASE_CTX_PREFIX}${++this.seq}`;
        ctx = token;
        out ??= msgs.slice();
        out[i] = { ...m, ctx };
      }
      if (!this.sentAt.has(ctx)) {
        this.sentAt.set(ctx, now);
        if (this.sentAt.size > SENT_CONTEXTS_MAX) this.sentAt.delete(this.sentAt.keys().next().value as string);
      }
    }
    return out ?? msgs;
  }

  /** A message received at `now`: an answer to a heartbeat of this term records its sender's acknowledgement; a lease context goes back to "". */
  incoming(m: Message): Message {
    if (m.type !== "heartbeat-resp") return m;
    if (m.term === this.term) {
      const t = this.sentAt.get(m.ctx);
      if (t !== undefined && t > (this.acked.get(m.from) ?? -Infinity)) this.acked.set(m.from, t);
    }
    return m.ctx.startsWith(LEASE_CTX_PREFIX) ? { ...m, ctx: "" } : m;
  }

  /** No lease for the rest of `term` (a leadership transfer began). */
  revoke(term: number): void {
    this.revokedTerm = term;
  }

  /**
   * Whether `self`, leading `term` with these voters, holds its lease at `now`: a quorum of the
   * voters (itself counted as now) acknowledged heartbeats it sent less than leaseMs ago.
   */
  holds(term: number, self: NodeId, voters: readonly NodeId[], now: number): boolean {
    if (term !== this.term || term === this.revokedTerm || !voters.includes(self)) return false;
    const times = voters.map((v) => (v === self ? now : (this.acked.get(v) ?? -Infinity))).sort((a, b) => b - a);
    const start = times[Math.floor(voters.length / 2)] as number;
    return now - start < this.leaseMs;
  }
}
