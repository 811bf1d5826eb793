// Leadership transfer (dissertation §3.10), snapshots (§5), learners and single-server membership changes (§4).
import { describe, expect, test } from "bun:test";
import { MemoryStorage } from "../../src/raft/storage.ts";
import { Cluster, enc, fmt } from "./harness.ts";

describe("leadership transfer", () => {
  test("the leader catches the target up, sends TimeoutNow, and the target wins without pre-vote", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.cut.add("1->2");
    c.node(1).rn.propose(enc("x"));
    c.stabilize();
    c.heal();
    expect(c.node(1).rn.transferLeadership(2)).toBe("ok");
    const sent = c.take();
    const m1 = sent.map(fmt);
    expect(m1.some((l) => l.startsWith("1->2 append"))).toBe(true);
    expect(m1.some((l) => l.includes("timeout-now"))).toBe(false); // not caught up yet
    expect(c.node(1).rn.propose(enc("refused")).ok).toBe(false); // proposals wait during a transfer
    c.deliver(sent);
    c.stabilize();
    expect(c.delivered.map(fmt)).toContain("1->2 timeout-now t2");
    expect(c.delivered.map(fmt)).toContain("2->1 vote t3 last=5/2 transfer");
    expect(c.raft(2).role).toBe("leader");
    expect(c.raft(2).term).toBe(3);
    expect(c.raft(1).role).toBe("follower");
  });

  test("a transfer that does not finish within an election timeout is abandoned", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.isolate(2);
    c.node(1).rn.transferLeadership(2);
    expect(c.raft(1).leadTransferee).toBe(2);
    for (let i = 0; i < 10; i++) {
      c.tick(1);
      c.stabilize();
    }
    expect(c.raft(1).leadTransferee).toBe(0);
    expect(c.raft(1).role).toBe("leader");
    expect(c.node(1).rn.propose(enc("ok")).ok).toBe(true);
  });

  test("transfer to a learner or to self is refused", () => {
    const c = new Cluster([1, 2, 3, 4], { voters: [1, 2, 3], learners: [4] });
    c.elect(1);
    expect(c.node(1).rn.transferLeadership(4)).toBe("not-a-voter");
    expect(c.node(1).rn.transferLeadership(1)).toBe("self");
    expect(c.node(2).rn.transferLeadership(3)).toBe("not-leader");
  });
});

describe("snapshots", () => {
  test("the leader sends a snapshot when the follower needs compacted entries; the follower installs it via Ready", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    for (let i = 0; i < 10; i++) c.node(1).rn.propose(enc(`v${i}`));
    c.stabilize();
    const applied = c.raft(1).log.applied;
    expect(applied).toBe(14);
    c.node(1).storage.createSnapshot(applied, c.raft(1).confState(), enc("state@14"));
    c.heal();
    c.tick(1);
    c.stabilize();
    expect(c.delivered.map(fmt)).toContain("1->3 snapshot t2 snap=14/2");
    // The follower's storage now starts after the snapshot, and its log caught up.
    expect(c.node(3).storage.snapshot().meta.index).toBe(14);
    expect(c.node(3).storage.snapshot().data).toEqual(enc("state@14"));
    expect(c.raft(3).log.committed).toBe(14);
    expect(c.raft(3).log.applied).toBe(14);
    expect(c.raft(3).confState()).toEqual({ voters: [1, 2, 3], learners: [] });
    // Replication continues normally after the snapshot.
    c.node(1).rn.propose(enc("after"));
    c.stabilize();
    expect(c.appliedData(3)).toEqual(["after"]);
  });

  test("a node restarts from its snapshot plus the log after it", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    for (let i = 0; i < 5; i++) c.node(1).rn.propose(enc(`v${i}`));
    c.stabilize();
    const s = c.node(2).storage;
    s.createSnapshot(6, c.raft(2).confState(), enc("upto6"));
    const restarted = c.add(2, s, 6);
    expect(restarted.rn.status()).toMatchObject({ term: 2, commit: 9, applied: 6, lastIndex: 9 });
    c.settle();
    expect(c.appliedData(2)).toEqual(["v2", "v3", "v4"]); // re-applied after the snapshot
  });

  test("a lost snapshot message is retried after a timeout", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    for (let i = 0; i < 3; i++) c.node(1).rn.propose(enc(`v${i}`));
    c.stabilize();
    c.node(1).storage.createSnapshot(c.raft(1).log.applied, c.raft(1).confState(), enc("s"));
    c.heal();
    c.cut.add("1->3");
    c.raft(1).prs.get(3)!.recentActive = true;
    c.node(1).rn.raft.reportUnreachable(3);
    for (let i = 0; i < 3; i++) {
      c.tick(1);
      c.stabilize();
    }
    c.heal();
    for (let i = 0; i < 25; i++) {
      c.tick(1);
      c.stabilize();
    }
    expect(c.raft(3).log.committed).toBe(c.raft(1).log.committed);
  });
});

describe("learners and membership", () => {
  test("a learner receives the log but neither votes nor counts toward commit", () => {
    const c = new Cluster([1, 2, 3, 4], { voters: [1, 2, 3], learners: [4] });
    c.elect(1);
    expect(c.delivered.some((m) => m.type === "pre-vote" && m.to === 4)).toBe(false);
    c.cut.add("1->2").add("1->3");
    c.node(1).rn.propose(enc("x"));
    c.stabilize();
    expect(c.raft(4).log.lastIndex()).toBe(6);
    expect(c.raft(1).log.committed).toBe(5); // leader + learner is not a quorum of {1,2,3}
    c.heal();
    c.tick(1);
    c.stabilize();
    expect(c.appliedData(4)).toEqual(["x"]);
  });

  test("a new node joins empty, as a learner, catches up, and is promoted to voter", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    for (let i = 0; i < 3; i++) c.node(1).rn.propose(enc(`v${i}`));
    c.stabilize();
    c.add(4, new MemoryStorage());
    expect(c.node(1).rn.proposeMembershipChange({ type: "add-learner", node: 4 }).ok).toBe(true);
    c.stabilize();
    c.tick(1);
    c.stabilize();
    expect(c.raft(4).confState()).toEqual({ voters: [1, 2, 3], learners: [4] });
    expect(c.appliedData(4)).toEqual(["v0", "v1", "v2"]);
    expect(c.node(1).rn.proposeMembershipChange({ type: "add-voter", node: 4 }).ok).toBe(true);
    c.stabilize();
    expect(c.raft(1).confState()).toEqual({ voters: [1, 2, 3, 4], learners: [] });
    expect(c.raft(4).promotable()).toBe(true);
  });

  test("one membership change at a time: a second is refused until the first is applied", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    const a = c.node(1).rn.proposeMembershipChange({ type: "add-learner", node: 4 });
    expect(a.ok).toBe(true);
    expect(c.node(1).rn.proposeMembershipChange({ type: "add-learner", node: 5 })).toEqual({ ok: false, reason: "pending-conf-change" });
    c.stabilize();
    expect(c.node(1).rn.proposeMembershipChange({ type: "add-learner", node: 5 }).ok).toBe(true);
  });

  test("a new leader accepts no membership change before its no-op is applied", () => {
    const c = new Cluster([1, 2, 3]);
    c.node(1).rn.campaign();
    for (let i = 0; i < 10; i++) c.deliver(c.take().filter((m) => m.type !== "append-resp"));
    expect(c.raft(1).role).toBe("leader");
    expect(c.node(1).rn.proposeMembershipChange({ type: "remove-node", node: 3 })).toEqual({ ok: false, reason: "pending-conf-change" });
    c.tick(1);
    c.stabilize();
    expect(c.node(1).rn.proposeMembershipChange({ type: "remove-node", node: 3 }).ok).toBe(true);
  });

  test("removing a voter changes the quorum once the change is applied", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(1).rn.proposeMembershipChange({ type: "remove-node", node: 3 });
    c.stabilize();
    expect(c.raft(1).confState()).toEqual({ voters: [1, 2], learners: [] });
    c.isolate(3);
    c.node(1).rn.propose(enc("without-3"));
    c.stabilize();
    expect(c.appliedData(2)).toEqual(["without-3"]);
    c.isolate(2); // now 1 alone is not a quorum of {1,2}
    c.node(1).rn.propose(enc("stuck"));
    c.stabilize();
    expect(c.appliedData(1)).toEqual(["without-3"]);
  });

  test("a removed leader steps down and the remaining voters elect a leader", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    expect(c.node(1).rn.proposeMembershipChange({ type: "remove-node", node: 1 }).ok).toBe(true);
    c.stabilize();
    expect(c.raft(1).role).toBe("follower");
    for (let i = 0; i < 40 && c.leader() === undefined; i++) {
      c.tickAll();
      c.stabilize();
    }
    const l = c.leader();
    expect(l === 2 || l === 3).toBe(true);
    expect(c.raft(l!).confState().voters).toEqual([2, 3]);
  });

  test("invalid changes are refused: adding an existing voter, removing a stranger, removing the last voter", () => {
    const c = new Cluster([1]);
    c.elect(1);
    const rn = c.node(1).rn;
    expect(rn.proposeMembershipChange({ type: "add-voter", node: 1 })).toEqual({ ok: false, reason: "invalid-conf-change" });
    expect(rn.proposeMembershipChange({ type: "remove-node", node: 9 })).toEqual({ ok: false, reason: "invalid-conf-change" });
    expect(rn.proposeMembershipChange({ type: "remove-node", node: 1 })).toEqual({ ok: false, reason: "invalid-conf-change" });
  });
});

describe("restart edge cases found by the simulator", () => {
  test("a snapshot that survived a crash without the hard state written after it implies its commit (seeds 22, 39)", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    for (let i = 0; i < 5; i++) c.node(1).rn.propose(enc(`v${i}`));
    c.stabilize();
    const s = new MemoryStorage();
    s.applySnapshot(c.node(1).storage.createSnapshot(9, c.raft(1).confState(), enc("s9")));
    s.setHardState({ term: 2, vote: 1, commit: 3 }); // stale: written before the snapshot arrived
    const n = c.add(4, s, 9);
    expect(n.rn.status()).toMatchObject({ commit: 9, applied: 9, lastIndex: 9 });
  });
});
