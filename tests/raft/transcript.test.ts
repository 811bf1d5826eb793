// Transcript tests: a script of steps and the exact messages and state transitions each produces.
import { describe, expect, test } from "bun:test";
import { Cluster, enc, fmt } from "./harness.ts";

describe("transcript", () => {
  test("election with pre-vote, no-op, replication and commit in a 3-node cluster", () => {
    const c = new Cluster([1, 2, 3]);
    // Bootstrap: three committed conf-change entries at term 1.
    expect(c.node(1).rn.status()).toMatchObject({ term: 1, role: "follower", commit: 3, applied: 3, lastIndex: 3 });

    c.node(1).rn.campaign();
    expect(c.raft(1).role).toBe("pre-candidate");
    expect(c.raft(1).term).toBe(1); // pre-vote does not bump the term
    let msgs = c.take();
    expect(msgs.map(fmt)).toEqual(["1->2 pre-vote t2 last=3/1", "1->3 pre-vote t2 last=3/1"]);

    c.deliver(msgs);
    msgs = c.take();
    expect(msgs.map(fmt)).toEqual(["2->1 pre-vote-resp t2", "3->1 pre-vote-resp t2"]);
    expect(c.raft(2).term).toBe(1);

    c.deliver(msgs.slice(0, 1)); // one grant + own vote = quorum
    expect(c.raft(1).role).toBe("candidate");
    expect(c.raft(1).term).toBe(2);
    expect(c.node(1).storage.getHardState()).toEqual({ term: 1, vote: 0, commit: 3 }); // not yet persisted
    msgs = c.take();
    expect(c.node(1).storage.getHardState()).toEqual({ term: 2, vote: 1, commit: 3 }); // persisted with the Ready
    expect(msgs.map(fmt)).toEqual(["1->2 vote t2 last=3/1", "1->3 vote t2 last=3/1"]);

    c.deliver(msgs);
    msgs = c.take();
    expect(msgs.map(fmt)).toEqual(["2->1 vote-resp t2", "3->1 vote-resp t2"]);
    expect(c.node(2).storage.getHardState()).toEqual({ term: 2, vote: 1, commit: 3 });

    c.deliver(msgs.slice(0, 1));
    expect(c.raft(1).role).toBe("leader");
    msgs = c.take();
    // The no-op of term 2 goes out with the previous entry's coordinates.
    expect(msgs.map(fmt)).toEqual([
      "1->2 append t2 prev=3/1 entries=[4/2] commit=3",
      "1->3 append t2 prev=3/1 entries=[4/2] commit=3",
    ]);
    c.deliver(msgs.concat(c.take())); // the late vote-resp is ignored by the leader
    msgs = c.take();
    expect(msgs.map(fmt)).toEqual(["2->1 append-resp t2 index=4", "3->1 append-resp t2 index=4"]);
    c.deliver(msgs);
    msgs = c.take();
    expect(c.raft(1).log.committed).toBe(4);
    // Commit advance is broadcast at once.
    expect(msgs.map(fmt)).toEqual([
      "1->2 append t2 prev=4/2 entries=[] commit=4",
      "1->3 append t2 prev=4/2 entries=[] commit=4",
    ]);
    c.deliver(msgs);
    c.stabilize();
    for (const id of [1, 2, 3]) expect(c.raft(id).log.committed).toBe(4);

    const r = c.node(1).rn.propose(enc("x"));
    expect(r).toEqual({ ok: true, index: 5, term: 2 });
    msgs = c.take();
    expect(msgs.map(fmt)).toEqual([
      "1->2 append t2 prev=4/2 entries=[5/2] commit=4",
      "1->3 append t2 prev=4/2 entries=[5/2] commit=4",
    ]);
  });

  test("a divergent tail is repaired with one rejection per term (fast backtracking)", () => {
    // Entries 1..3 are the bootstrap (term 1). Node 1 has 4/2 5/3 6/3; node 2 has a term-2 tail 4..7.
    const c = new Cluster([1, 2, 3], {
      logs: { 1: { terms: [2, 3, 3], term: 3 }, 2: { terms: [2, 2, 2, 2], term: 3 }, 3: { terms: [], term: 3 } },
    });
    c.node(1).rn.campaign();
    c.stabilize(); // elections and repair run to completion; the transcript below replays the repair
    const lines = c.delivered.map(fmt).filter((l) => l.startsWith("1->2 append") || l.startsWith("2->1 append"));
    expect(lines.slice(0, 3)).toEqual([
      "1->2 append t4 prev=6/3 entries=[7/4] commit=3",
      "2->1 append-resp t4 reject index=6 hint=6/2",
      // Leader: the last index <= 6 whose term <= 2 in its own log is 4: resend everything after it.
      "1->2 append t4 prev=4/2 entries=[5/3,6/3,7/4] commit=3",
    ]);
    expect(c.raft(2).log.lastIndex()).toBe(7);
    for (const i of [4, 5, 6, 7]) expect(c.raft(2).log.term(i)).toBe(c.raft(1).log.term(i));
    expect(c.raft(1).log.committed).toBe(7);
  });

  test("check-quorum: an isolated leader steps down at the end of its first silent check window", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.isolate(1);
    const steps: string[] = [];
    for (let t = 1; t <= 20; t++) {
      c.tick(1);
      c.take();
      steps.push(`${t}:${c.raft(1).role}`);
    }
    // Check at tick 10 still sees the answers from the election; the window 10..20 is silent.
    expect(steps.filter((_, i) => [8, 9, 18, 19].includes(i))).toEqual(["9:leader", "10:leader", "19:leader", "20:follower"]);
    expect(c.raft(1).term).toBe(2); // stepping down does not change the term
  });
});
