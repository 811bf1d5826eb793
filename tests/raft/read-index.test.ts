// ReadIndex rules (dissertation §6.4): confirmed by a heartbeat quorum, only after the term's no-op commits.
import { describe, expect, test } from "bun:test";
import { Cluster, fmt } from "./harness.ts";

describe("ReadIndex", () => {
  test("a read is released only after a quorum answers a heartbeat tagged with its context", () => {
    const c = new Cluster([1, 2, 3, 4, 5]);
    c.elect(1);
    expect(c.node(1).rn.readIndex("req-1")).toBe("ok");
    const hbs = c.take();
    expect(hbs.map(fmt)).toEqual([
      "1->2 heartbeat t2 commit=6 ctx=req-1",
      "1->3 heartbeat t2 commit=6 ctx=req-1",
      "1->4 heartbeat t2 commit=6 ctx=req-1",
      "1->5 heartbeat t2 commit=6 ctx=req-1",
    ]);
    c.deliver(hbs);
    const resps = c.take();
    c.deliver(resps.slice(0, 1)); // leader + 1 of 5: not a quorum
    c.settle();
    expect(c.node(1).readStates).toEqual([]);
    c.deliver(resps.slice(1, 2)); // leader + 2 of 5 = quorum
    c.settle();
    expect(c.node(1).readStates).toEqual([{ index: 6, requestCtx: "req-1" }]);
  });

  test("a read waits until the leader's no-op of its term is committed", () => {
    const c = new Cluster([1, 2, 3]);
    c.node(1).rn.campaign();
    // Run the election but hold back the acknowledgements of the no-op.
    for (let i = 0; i < 10; i++) c.deliver(c.take().filter((m) => m.type !== "append-resp"));
    expect(c.raft(1).role).toBe("leader");
    expect(c.raft(1).log.committed).toBe(3);
    expect(c.node(1).rn.readIndex("early")).toBe("ok");
    expect(c.take().filter((m) => m.type === "heartbeat")).toEqual([]); // no confirmation round yet
    c.tick(1);
    c.stabilize();
    expect(c.raft(1).log.committed).toBe(4);
    expect(c.node(1).readStates).toEqual([{ index: 4, requestCtx: "early" }]);
  });

  test("a read context is never reused: a duplicate pending context is refused", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    expect(c.node(1).rn.readIndex("same")).toBe("ok");
    expect(c.node(1).rn.readIndex("same")).toBe("duplicate");
    c.stabilize();
    expect(c.node(1).readStates.map((r) => r.requestCtx)).toEqual(["same"]);
  });

  test("followers and candidates refuse ReadIndex; the client must go to the leader", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    expect(c.node(2).rn.readIndex("r")).toBe("not-leader");
  });

  test("a leader that lost its quorum never confirms a read (pending reads die with leadership)", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.isolate(1);
    expect(c.node(1).rn.readIndex("lost")).toBe("ok");
    for (let i = 0; i < 30; i++) {
      c.tick(1);
      c.stabilize();
    }
    expect(c.raft(1).role).toBe("follower");
    c.heal();
    c.tickAll(30);
    c.stabilize();
    expect(c.node(1).readStates).toEqual([]);
  });

  test("a later confirmation also releases earlier reads, in order", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(1).rn.readIndex("a");
    c.take(); // the first round is lost
    c.node(1).rn.readIndex("b");
    c.stabilize();
    expect(c.node(1).readStates.map((r) => r.requestCtx)).toEqual(["a", "b"]);
  });

  test("a lost confirmation round is retried by the next heartbeat", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(1).rn.readIndex("x");
    c.take(); // lost
    c.tick(1);
    c.stabilize();
    expect(c.node(1).readStates.map((r) => r.requestCtx)).toEqual(["x"]);
  });

  test("a single-voter cluster answers at once with its commit index", () => {
    const c = new Cluster([1]);
    c.elect(1);
    c.node(1).rn.readIndex("solo");
    c.settle();
    expect(c.node(1).readStates).toEqual([{ index: 2, requestCtx: "solo" }]);
  });
});

describe("limits", () => {
  test("a leader without a quorum refuses proposals past uncommittedEntriesMax instead of growing its log", () => {
    const c = new Cluster([1, 2, 3], { config: { uncommittedEntriesMax: 5 } });
    c.elect(1);
    c.isolate(1);
    const results = Array.from({ length: 7 }, (_, i) => c.node(1).rn.propose(new Uint8Array([i])));
    expect(results.map((r) => (r.ok ? "ok" : r.reason))).toEqual(["ok", "ok", "ok", "ok", "ok", "busy", "busy"]);
    expect(c.node(1).rn.proposeBatch([new Uint8Array(1)]).ok).toBe(false);
    c.heal();
    c.tick(1);
    c.stabilize();
    expect(c.node(1).rn.propose(new Uint8Array([9])).ok).toBe(true);
  });

  test("pending ReadIndex requests are bounded by pendingReadsMax", () => {
    const c = new Cluster([1, 2, 3], { config: { pendingReadsMax: 2 } });
    c.elect(1);
    c.isolate(1);
    expect(["a", "b", "c"].map((ctx) => c.node(1).rn.readIndex(ctx))).toEqual(["ok", "ok", "busy"]);
  });
});

describe("bounded-staleness follower reads", () => {
  test("a follower knows how long ago it heard from the leader and the leader's commit index then", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.cut.add("1->3");
    c.node(1).rn.propose(new Uint8Array([1]));
    c.stabilize();
    c.heal();
    c.cut.add("1->3"); // node 3 keeps missing appends...
    c.tick(3, 2);
    let s3 = c.node(3).rn.status();
    expect(s3).toMatchObject({ role: "follower", lead: 1, leaderContactTicks: 2, applied: 4, leaderCommit: 4 });
    c.heal();
    c.tick(1); // ...then a heartbeat reports the leader's commit (5) although node 3 may only commit 4
    const hb = c.take().filter((m) => m.to === 3);
    c.deliver(hb);
    s3 = c.node(3).rn.status();
    expect(s3).toMatchObject({ leaderContactTicks: 0, commit: 4, leaderCommit: 5 });
    // applied (4) < leaderCommit (5): a bounded-staleness read must wait or redirect.
    c.stabilize();
    expect(c.node(3).rn.status()).toMatchObject({ applied: 5, leaderCommit: 5 });
    expect(c.node(1).rn.status()).toMatchObject({ leaderContactTicks: 0, leaderCommit: 5 });
  });
});
