// Paper rules for elections (Raft §5.2, §5.4.1; dissertation §9.6 pre-vote, §6.2 check-quorum), one test per rule.
import { describe, expect, test } from "bun:test";
import type { Message } from "../../src/raft/types.ts";
import { Cluster, fmt } from "./harness.ts";

const vote = (from: number, to: number, term: number, lastIndex: number, lastTerm: number, type: "vote" | "pre-vote" = "vote"): Message => ({
  type,
  from,
  to,
  term,
  lastIndex,
  lastTerm,
  transfer: false,
});

describe("elections", () => {
  test("Election Safety: at most one leader per term even when every node campaigns at once", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const c = new Cluster([1, 2, 3, 4, 5], { seed, config: { preVote: false } });
      for (const id of [1, 2, 3, 4, 5]) c.node(id).rn.campaign();
      c.stabilize();
      const leadersByTerm = new Map<number, number[]>();
      for (const n of c.nodes.values()) {
        if (n.rn.raft.role === "leader") leadersByTerm.set(n.rn.raft.term, [...(leadersByTerm.get(n.rn.raft.term) ?? []), n.id]);
      }
      for (const ids of leadersByTerm.values()) expect(ids.length).toBe(1);
    }
  });

  test("a follower that hears nothing for its randomized election timeout starts an election", () => {
    const c = new Cluster([1, 2, 3], { config: { preVote: false } });
    const r = c.raft(1);
    expect(r.randomizedElectionTimeout).toBeGreaterThanOrEqual(r.electionTicks);
    expect(r.randomizedElectionTimeout).toBeLessThan(2 * r.electionTicks);
    c.tick(1, r.randomizedElectionTimeout - 1);
    expect(r.role).toBe("follower");
    c.tick(1, 1);
    expect(r.role).toBe("candidate");
    expect(r.term).toBe(2);
    expect(r.vote).toBe(1);
  });

  test("randomized election timeouts come from the seeded source: same seed, same timeouts", () => {
    const a = new Cluster([1, 2, 3], { seed: 42 });
    const b = new Cluster([1, 2, 3], { seed: 42 });
    const c = new Cluster([1, 2, 3], { seed: 43 });
    const t = (x: Cluster) => [1, 2, 3].map((id) => x.raft(id).randomizedElectionTimeout);
    expect(t(a)).toEqual(t(b));
    const seen = new Set<string>();
    for (let s = 1; s <= 20; s++) seen.add(JSON.stringify(t(new Cluster([1, 2, 3], { seed: s }))));
    expect(seen.size).toBeGreaterThan(1);
    expect(t(c).every((x) => x >= 10 && x < 20)).toBe(true);
  });

  test("RequestVote: a voter grants at most one vote per term", () => {
    const c = new Cluster([1, 2, 3]);
    c.deliver([vote(1, 3, 2, 3, 1)]);
    c.deliver([vote(2, 3, 2, 3, 1)]);
    expect(c.take().map(fmt)).toEqual(["3->1 vote-resp t2", "3->2 vote-resp t2 reject"]);
    // Asking again (a retransmission) from the same candidate is granted again.
    c.deliver([vote(1, 3, 2, 3, 1)]);
    expect(c.take().map(fmt)).toEqual(["3->1 vote-resp t2"]);
  });

  test("RequestVote: deny a candidate whose log is less up to date (last term, then length)", () => {
    const c = new Cluster([1, 2, 3], { logs: { 3: { terms: [2, 2], term: 2 } } });
    c.deliver([vote(1, 3, 3, 10, 1)]); // longer but older last term
    expect(c.take().map(fmt)).toEqual(["3->1 vote-resp t3 reject"]);
    c.deliver([vote(2, 3, 4, 4, 2)]); // same last term, shorter
    expect(c.take().map(fmt)).toEqual(["3->2 vote-resp t4 reject"]);
    c.deliver([vote(1, 3, 5, 5, 2)]); // same last term, same length
    expect(c.take().map(fmt)).toEqual(["3->1 vote-resp t5"]);
  });

  test("a granted vote is persisted in the same Ready that carries the response", () => {
    const c = new Cluster([1, 2, 3]);
    c.deliver([vote(1, 2, 2, 3, 1)]);
    const rd = c.node(2).rn.ready();
    expect(rd.hardState).toEqual({ term: 2, vote: 1, commit: 3 });
    expect(rd.mustSync).toBe(true);
    expect(rd.messages.map(fmt)).toEqual(["2->1 vote-resp t2"]);
    c.node(2).rn.advance(rd);
  });

  test("All servers: a message with a higher term converts the receiver to follower in that term", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    expect(c.raft(1).role).toBe("leader");
    c.deliver([{ type: "heartbeat-resp", from: 2, to: 1, term: 7, ctx: "" }]);
    expect(c.raft(1).role).toBe("follower");
    expect(c.raft(1).term).toBe(7);
  });

  test("All servers: messages from a stale term are ignored (a stale leader is told the new term)", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(1).rn.transferLeadership(2);
    c.stabilize();
    expect(c.raft(2).role).toBe("leader");
    expect(c.raft(2).term).toBe(3);
    c.take();
    c.deliver([{ type: "append", from: 1, to: 3, term: 2, logIndex: 0, logTerm: 0, entries: [], commit: 0 }]);
    expect(c.take().map(fmt)).toEqual(["3->1 append-resp t3 index=0"]);
    expect(c.raft(3).lead).toBe(2);
  });

  test("Candidate: a majority of votes makes a leader; a majority of rejections makes a follower", () => {
    const c = new Cluster([1, 2, 3, 4, 5], { config: { preVote: false } });
    c.node(1).rn.campaign();
    c.take();
    const resp = (from: number, reject: boolean): Message => ({ type: "vote-resp", from, to: 1, term: 2, reject });
    c.deliver([resp(2, true), resp(3, true)]);
    expect(c.raft(1).role).toBe("candidate");
    c.deliver([resp(4, true)]);
    expect(c.raft(1).role).toBe("follower");

    const d = new Cluster([1, 2, 3, 4, 5], { config: { preVote: false } });
    d.node(1).rn.campaign();
    d.take();
    d.deliver([resp(2, false)]);
    expect(d.raft(1).role).toBe("candidate");
    d.deliver([resp(3, false)]);
    expect(d.raft(1).role).toBe("leader");
  });

  test("Candidate: an AppendEntries from a leader of the same term makes the candidate a follower", () => {
    const c = new Cluster([1, 2, 3], { config: { preVote: false } });
    c.node(1).rn.campaign();
    c.take();
    c.deliver([{ type: "append", from: 2, to: 1, term: 2, logIndex: 3, logTerm: 1, entries: [], commit: 3 }]);
    expect(c.raft(1).role).toBe("follower");
    expect(c.raft(1).lead).toBe(2);
  });

  test("Leader: appends a no-op entry of its term on election", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    const e = c.node(1).storage.allEntries().at(-1);
    expect(e).toMatchObject({ index: 4, term: 2, type: "normal" });
    expect(e?.data.length).toBe(0);
    expect(c.raft(2).log.committed).toBe(4);
  });

  test("Pre-vote: a partitioned node does not inflate its term, and does not disrupt the leader on return", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    for (let i = 0; i < 100; i++) {
      c.tick(3);
      c.take();
    }
    expect(c.raft(3).term).toBe(2);
    expect(c.raft(3).role).toBe("pre-candidate");
    c.heal();
    c.tick(3, 30);
    c.stabilize();
    expect(c.raft(1).role).toBe("leader");
    expect(c.raft(1).term).toBe(2);
  });

  test("Pre-vote: without it, a returning partitioned node forces a new election", () => {
    const c = new Cluster([1, 2, 3], { config: { preVote: false, checkQuorum: false } });
    c.elect(1);
    c.isolate(3);
    for (let i = 0; i < 100; i++) {
      c.tick(3);
      c.take();
    }
    expect(c.raft(3).term).toBeGreaterThan(5);
    c.heal();
    c.tick(3, 20); // its next campaign reaches the others at the inflated term
    c.stabilize();
    expect(c.raft(1).term).toBeGreaterThan(5); // the leader was deposed by the inflated term
    expect(c.raft(1).term).toBe(c.raft(3).term);
  });

  test("Check-quorum: a follower that hears from its leader ignores vote requests (leader lease)", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.deliver([vote(3, 2, 5, 10, 9)]);
    expect(c.take()).toEqual([]);
    expect(c.raft(2).term).toBe(2);
    // After an election timeout of silence, the same request is considered.
    c.tick(2, 10);
    c.take();
    c.deliver([vote(3, 2, 5, 10, 9)]);
    expect(c.take().map(fmt)).toContain("2->3 vote-resp t5");
  });

  test("refuseVotesAtStart: a node just started refuses votes for an election timeout, as if it heard from a leader", () => {
    const quiet = new Cluster([1, 2, 3], { config: { refuseVotesAtStart: true } });
    quiet.deliver([vote(3, 2, 5, 10, 9), vote(3, 2, 5, 10, 9, "pre-vote")]);
    expect(quiet.take()).toEqual([]);
    expect(quiet.raft(2).term).toBe(1);
    quiet.tick(2, 9);
    quiet.take();
    quiet.deliver([vote(3, 2, 5, 10, 9)]);
    expect(quiet.take()).toEqual([]);
    // One election timeout after its start, the request is considered.
    quiet.tick(2, 1);
    quiet.take();
    quiet.deliver([vote(3, 2, 5, 10, 9)]);
    expect(quiet.take().map(fmt)).toContain("2->3 vote-resp t5");
    // Without the option, at once.
    const plain = new Cluster([1, 2, 3]);
    plain.deliver([vote(3, 2, 5, 10, 9)]);
    expect(plain.take().map(fmt)).toContain("2->3 vote-resp t5");
  });

  test("Check-quorum: a leader that cannot reach a quorum for an election timeout steps down", () => {
    const c = new Cluster([1, 2, 3, 4, 5]);
    c.elect(1);
    c.isolate(1);
    c.cut.delete("1->2");
    c.cut.delete("2->1"); // 1 still reaches 2: two of five is not a quorum
    for (let i = 0; i < 20; i++) {
      c.tick(1);
      c.stabilize();
    }
    expect(c.raft(1).role).toBe("follower");
  });

  test("a node not in the voter set never campaigns", () => {
    const c = new Cluster([1, 2, 3, 4], { voters: [1, 2, 3], learners: [4] });
    c.tick(4, 100);
    expect(c.raft(4).role).toBe("follower");
    expect(c.take()).toEqual([]);
  });
});
