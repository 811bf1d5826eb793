// The leader's lease (src/node/lease.ts) on a hand-driven clock: heartbeats get lease contexts and
// their send times; answers of the term count, with the send time of what they answer; the lease
// holds while a quorum's acknowledged send time is less than leaseMs old; a transfer revokes it.
import { describe, expect, test } from "bun:test";
import { LEASE_CTX_PREFIX, LeaderLease } from "../../src/node/lease.ts";
import type { Message } from "../../src/raft/types.ts";

const hb = (to: number, term: number, ctx = ""): Message => ({ type: "heartbeat", from: 1, to, term, commit: 0, leaderCommit: 0, ctx });
const resp = (from: number, term: number, ctx: string): Message => ({ type: "heartbeat-resp", from, to: 1, term, ctx });
const ctxOf = (m: Message): string => (m as { ctx: string }).ctx;

describe("the leader's lease", () => {
  test("a broadcast gets one lease context; answers put it back to \"\" for Raft; read contexts pass unchanged", () => {
    const l = new LeaderLease(250);
    const append: Message = { type: "append", from: 1, to: 2, term: 2, logIndex: 0, logTerm: 0, entries: [], commit: 0 };
    const out = l.outgoing([hb(2, 2), hb(3, 2), append, hb(4, 2, "r.7")], 0);
    expect(ctxOf(out[0]!)).toStartWith(LEASE_CTX_PREFIX);
    expect(ctxOf(out[1]!)).toBe(ctxOf(out[0]!));
    expect(out[2]).toBe(append);
    expect(ctxOf(out[3]!)).toBe("r.7");
    expect(ctxOf(l.outgoing([hb(2, 2)], 10)[0]!)).not.toBe(ctxOf(out[0]!));
    expect(ctxOf(l.incoming(resp(2, 2, ctxOf(out[0]!))))).toBe("");
    expect(ctxOf(l.incoming(resp(2, 2, "r.7")))).toBe("r.7");
  });

  test("held while a quorum acknowledged a heartbeat sent less than leaseMs ago; counted from the send time", () => {
    const l = new LeaderLease(250);
    const voters = [1, 2, 3];
    expect(l.holds(2, 1, voters, 0)).toBe(false);
    const [a] = l.outgoing([hb(2, 2), hb(3, 2)], 1000);
    expect(l.holds(2, 1, voters, 1001)).toBe(false);
    l.incoming(resp(2, 2, ctxOf(a!)));
    // Answered late (at 1100), still counted from 1000.
    expect(l.holds(2, 1, voters, 1100)).toBe(true);
    expect(l.holds(2, 1, voters, 1249)).toBe(true);
    expect(l.holds(2, 1, voters, 1250)).toBe(false);
    // A newer heartbeat answered by the other voter renews it.
    const [b] = l.outgoing([hb(2, 2), hb(3, 2)], 1200);
    l.incoming(resp(3, 2, ctxOf(b!)));
    expect(l.holds(2, 1, voters, 1449)).toBe(true);
    expect(l.holds(2, 1, voters, 1450)).toBe(false);
    // An old answer arriving after a newer one does not move it back; an unknown context counts for nothing.
    l.incoming(resp(3, 2, ctxOf(a!)));
    l.incoming(resp(2, 2, `${LEASE_CTX_PREFIX}999`));
    expect(l.holds(2, 1, voters, 1449)).toBe(true);
  });

  test("five voters need two acknowledgements; a learner's or a non-voter's count for nothing; not a voter, no lease", () => {
    const l = new LeaderLease(250);
    const [a] = l.outgoing([hb(2, 2), hb(3, 2), hb(9, 2)], 0);
    l.incoming(resp(2, 2, ctxOf(a!)));
    l.incoming(resp(9, 2, ctxOf(a!)));
    expect(l.holds(2, 1, [1, 2, 3, 4, 5], 10)).toBe(false);
    l.incoming(resp(3, 2, ctxOf(a!)));
    expect(l.holds(2, 1, [1, 2, 3, 4, 5], 10)).toBe(true);
    expect(l.holds(2, 1, [2, 3, 4], 10)).toBe(false);
  });

  test("another term: answers of an older term do not count, a new leadership starts with no lease; a revoked term holds none", () => {
    const l = new LeaderLease(250);
    const [a] = l.outgoing([hb(2, 2), hb(3, 2)], 0);
    l.incoming(resp(2, 3, ctxOf(a!))); // the follower moved on to term 3
    expect(l.holds(2, 1, [1, 2, 3], 10)).toBe(false);
    l.incoming(resp(2, 2, ctxOf(a!)));
    expect(l.holds(2, 1, [1, 2, 3], 10)).toBe(true);
    expect(l.holds(3, 1, [1, 2, 3], 10)).toBe(false);
    const [b] = l.outgoing([hb(2, 5), hb(3, 5)], 20);
    expect(l.holds(5, 1, [1, 2, 3], 21)).toBe(false);
    l.incoming(resp(2, 2, ctxOf(a!))); // a late answer of the old term
    expect(l.holds(5, 1, [1, 2, 3], 21)).toBe(false);
    l.incoming(resp(3, 5, ctxOf(b!)));
    expect(l.holds(5, 1, [1, 2, 3], 21)).toBe(true);
    l.revoke(5);
    expect(l.holds(5, 1, [1, 2, 3], 22)).toBe(false);
    const [c] = l.outgoing([hb(2, 5), hb(3, 5)], 30);
    l.incoming(resp(2, 5, ctxOf(c!)));
    expect(l.holds(5, 1, [1, 2, 3], 31)).toBe(false);
  });

  test("the contexts remembered are bounded", () => {
    const l = new LeaderLease(250);
    const first = l.outgoing([hb(2, 2)], 0);
    for (let i = 1; i <= 5000; i++) l.outgoing([hb(2, 2)], i);
    l.incoming(resp(2, 2, ctxOf(first[0]!)));
    expect(l.holds(2, 1, [1, 2, 3], 5001)).toBe(false);
  });
});
