// The Raft runtime over its twins: when proposals and reads complete, the errors they fail with, and
// that nothing of a Ready is sent before its persist completes (but a leader's appends of its term).
import { describe, expect, test } from "bun:test";
import { MemoryRaftStorage } from "../../src/node/memory-storage.ts";
import { DroppedError, NodeClosedError, NotLeaderError, RaftNode, UnknownOutcomeError } from "../../src/node/raft-node.ts";
import { RegisterStateMachine, type RegisterResult } from "../../src/node/state-machine.ts";
import { MemoryNetwork } from "../../src/node/transport.ts";
import { Rand } from "../../src/raft/rand.ts";
import { MemoryStorage, bootstrapStorage } from "../../src/raft/storage.ts";
import type { Message, NodeId } from "../../src/raft/types.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

interface TNode {
  id: NodeId;
  node: RaftNode<RegisterResult>;
  sm: RegisterStateMachine;
  storage: MemoryRaftStorage;
}

/** A cluster over the twins. Disks complete writes at once unless `slow` holds the node's id (then on step()). */
class TestCluster {
  readonly net = new MemoryNetwork();
  readonly nodes = new Map<NodeId, TNode>();
  /** Directed links that drop: "from>to". */
  readonly cut = new Set<string>();
  readonly sent: Message[] = [];
  readonly log: string[] = [];

  constructor(
    ids: NodeId[],
    readonly slow = new Set<NodeId>(),
  ) {
    this.net.route = (m) => {
      this.sent.push(m);
      if (!this.cut.has(`${m.from}>${m.to}`)) this.net.queue.push(m);
    };
    for (const id of ids) {
      const disk = new MemoryStorage();
      bootstrapStorage(disk, ids);
      const sm = new RegisterStateMachine();
      sm.onApply = (e) => this.log.push(`apply ${id} ${e.index}`);
      const storage = new MemoryRaftStorage(disk, { persistSteps: () => (this.slow.has(id) ? 1000 : 0) });
      const node = new RaftNode<RegisterResult>({
        id,
        storage,
        transport: this.net.attach(id),
        stateMachine: sm,
        rand: new Rand(id),
        raft: { electionTicks: 10, heartbeatTicks: 1 },
      });
      this.nodes.set(id, { id, node, sm, storage });
    }
  }

  get(id: NodeId): TNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Lets persist continuations run and delivers messages until nothing moves. */
  async settle(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      await new Promise<void>((r) => setImmediate(r));
      if (this.net.flush() === 0) {
        await new Promise<void>((r) => setImmediate(r));
        if (this.net.queue.length === 0) return;
      }
    }
    throw new Error("cluster did not settle");
  }

  /** Completes the slow disks' writes in flight. */
  async completeWrites(): Promise<void> {
    for (const n of this.nodes.values()) for (let i = 0; i < 1000 && n.storage.writing; i++) n.storage.step();
    await this.settle();
  }

  async elect(id: NodeId): Promise<TNode> {
    await this.settle(); // the bootstrap membership is applied by the first Ready
    this.get(id).node.campaign();
    await this.settle();
    expect(this.get(id).node.status().role).toBe("leader");
    return this.get(id);
  }

  /** Ticks `ids` until one of them leads (an election among the nodes still connected). */
  async tickUntilLeader(ids: NodeId[]): Promise<TNode> {
    for (let i = 0; i < 200; i++) {
      for (const id of ids) this.get(id).node.tick();
      await this.settle();
      for (const id of ids) if (this.get(id).node.status().role === "leader") return this.get(id);
    }
    throw new Error(`no leader among ${ids.join(",")}`);
  }

  /** Proposes on `n` and runs the cluster until it settles. */
  async propose(n: TNode, value: string): Promise<RegisterResult> {
    const p = n.node.propose(enc(value));
    await this.settle();
    return p;
  }
}

/** Records how a promise settled, without waiting for it. */
function watch<T>(p: Promise<T>): { state: "pending" | "resolved" | "rejected"; value?: T; error?: unknown } {
  const w: { state: "pending" | "resolved" | "rejected"; value?: T; error?: unknown } = { state: "pending" };
  p.then(
    (v) => {
      w.state = "resolved";
      w.value = v;
    },
    (e: unknown) => {
      w.state = "rejected";
      w.error = e;
    },
  );
  return w;
}

describe("RaftNode proposals", () => {
  test("a proposal resolves only after its entry is committed and applied, with the state machine's result", async () => {
    const c = new TestCluster([1, 2, 3]);
    const l = await c.elect(1);
    // Without a quorum the entry cannot commit: the proposal stays pending.
    c.cut.add("1>2").add("1>3");
    const w = watch(l.node.propose(enc("a")));
    c.log.push("proposed");
    await c.settle();
    expect(w.state).toBe("pending");
    expect(l.sm.value).toBe("");
    c.cut.clear();
    for (let i = 0; i < 3 && w.state === "pending"; i++) {
      l.node.tick();
      await c.settle();
    }
    expect(w.state).toBe("resolved");
    expect(w.value?.value).toBe("a");
    const index = w.value?.index as number;
    // The leader applied it before resolving (the resolution sees the applied state).
    expect(c.log.indexOf(`apply 1 ${index}`)).toBeGreaterThan(c.log.indexOf("proposed"));
    expect(l.sm.applied).toBeGreaterThanOrEqual(index);
    expect(l.node.status().pendingProposals).toBe(0);
  });

  test("a proposal resolves only once the leader's own write is durable (slow leader disk)", async () => {
    const c = new TestCluster([1, 2, 3]);
    const l = await c.elect(1);
    c.slow.add(1);
    const w = watch(l.node.propose(enc("b")));
    await c.settle();
    expect(w.state).toBe("pending");
    expect(l.node.status().persisting).toBe(true);
    await c.completeWrites();
    for (let i = 0; i < 5 && w.state === "pending"; i++) await c.completeWrites();
    expect(w.state).toBe("resolved");
    expect(w.value?.value).toBe("b");
  });

  test("a proposal on a follower rejects with NotLeaderError naming the leader", async () => {
    const c = new TestCluster([1, 2, 3]);
    await c.elect(2);
    const err = await c.get(3).node.propose(enc("x")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotLeaderError);
    expect((err as NotLeaderError).leader).toBe(2);
    const readErr = await c.get(1).node.readIndex().catch((e: unknown) => e);
    expect(readErr).toBeInstanceOf(NotLeaderError);
    expect((readErr as NotLeaderError).leader).toBe(2);
  });

  test("a leader that loses leadership after appending fails the proposal with UnknownOutcomeError", async () => {
    const c = new TestCluster([1, 2, 3]);
    const l = await c.elect(1);
    // 1 is cut off from everyone; 2 and 3 elect 2 in a later term.
    for (const o of [2, 3]) c.cut.add(`1>${o}`).add(`${o}>1`);
    const w = watch(l.node.propose(enc("lost?")));
    await c.settle();
    expect(w.state).toBe("pending");
    const nl = await c.tickUntilLeader([2, 3]);
    // 1 hears from the new leader and steps down.
    c.cut.clear();
    nl.node.tick();
    await c.settle();
    expect(l.node.status().role).toBe("follower");
    expect(w.state).toBe("rejected");
    expect(w.error).toBeInstanceOf(UnknownOutcomeError);
    // Its entry was overwritten by the new leader's log: it was never applied anywhere.
    expect(c.get(3).sm.value).not.toBe("lost?");
  });

  test("a proposal the leader refuses (leadership transfer in progress) rejects with DroppedError", async () => {
    const c = new TestCluster([1, 2, 3]);
    const l = await c.elect(1);
    c.cut.add("1>2"); // the transfer cannot finish
    expect(l.node.transferLeadership(2)).toBe("ok");
    const err = await l.node.propose(enc("y")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DroppedError);
  });
});

describe("RaftNode reads", () => {
  test("a read waits for a quorum round, then sees every write acknowledged before it began", async () => {
    const c = new TestCluster([1, 2, 3]);
    const l = await c.elect(1);
    const r1 = await c.propose(l, "w1");
    c.cut.add("1>2").add("1>3");
    const w = watch(l.node.readIndex());
    for (let i = 0; i < 3; i++) {
      l.node.tick();
      await c.settle();
    }
    expect(w.state).toBe("pending");
    c.cut.clear();
    l.node.tick();
    await c.settle();
    expect(w.state).toBe("resolved");
    expect(w.value as number).toBeGreaterThanOrEqual(r1.index);
    expect(l.sm.applied).toBeGreaterThanOrEqual(w.value as number);
    expect(l.sm.value).toBe("w1");
  });

  test("reads that arrive together share one round; reads during a round start the next one at once", async () => {
    const c = new TestCluster([1, 2, 3]);
    const l = await c.elect(1);
    await c.propose(l, "w");
    const rounds = (): number => new Set(c.sent.filter((m) => m.type === "heartbeat" && m.ctx !== "").map((m) => (m as { ctx: string }).ctx)).size;
    const before = rounds();
    const first = Array.from({ length: 10 }, () => watch(l.node.readIndex()));
    // The first round is in flight (its heartbeats are queued, not answered): these share a second, overlapping one.
    await new Promise<void>((r) => setImmediate(r));
    const second = Array.from({ length: 10 }, () => watch(l.node.readIndex()));
    await c.settle();
    expect([...first, ...second].map((w) => w.state)).toEqual(Array(20).fill("resolved"));
    expect(rounds() - before).toBe(2);
    expect(l.node.status().pendingReads).toBe(0);
  });

  test("a read on a leader that loses leadership before its round completes is rejected", async () => {
    const c = new TestCluster([1, 2, 3]);
    const l = await c.elect(1);
    for (const o of [2, 3]) c.cut.add(`1>${o}`).add(`${o}>1`);
    const w = watch(l.node.readIndex());
    await c.settle();
    const nl = await c.tickUntilLeader([2, 3]);
    c.cut.clear();
    nl.node.tick();
    await c.settle();
    expect(w.state).toBe("rejected");
    expect(w.error).toBeInstanceOf(NotLeaderError);
    expect((w.error as NotLeaderError).leader).toBe(nl.id);
  });
});

describe("RaftNode snapshots", () => {
  test("snapshotEntries compacts the log behind a saved image; a restart restores the state machine from it", async () => {
    const net = new MemoryNetwork();
    const disk = new MemoryStorage();
    bootstrapStorage(disk, [1]);
    const start = (storage: MemoryRaftStorage, sm: RegisterStateMachine): RaftNode<RegisterResult> =>
      new RaftNode<RegisterResult>({
        id: 1,
        storage,
        transport: net.attach(1),
        stateMachine: sm,
        rand: new Rand(1),
        raft: { electionTicks: 10, heartbeatTicks: 1 },
        snapshotEntries: 5,
        saveSnapshot: (meta, data) => {
          storage.saveImage(meta.index, data);
          return Promise.resolve();
        },
      });
    const storage = new MemoryRaftStorage(disk);
    const node = start(storage, new RegisterStateMachine());
    await new Promise<void>((r) => setImmediate(r));
    node.campaign();
    await new Promise<void>((r) => setImmediate(r));
    let last: RegisterResult | undefined;
    for (let i = 1; i <= 12; i++) last = await node.propose(enc(`v${i}`));
    await new Promise<void>((r) => setImmediate(r));
    expect(last?.value).toBe("v12");
    // Compacted: the log starts after a snapshot, which holds the register as of its index.
    const snap = storage.snapshot();
    expect(storage.firstIndex()).toBeGreaterThan(5);
    expect(snap.meta.index).toBe(storage.firstIndex() - 1);
    expect(new TextDecoder().decode(snap.data)).toMatch(/^v\d+$/);
    // Two more entries, fewer than snapshotEntries: the log holds entries past the snapshot.
    expect((await node.propose(enc("v13"))).value).toBe("v13");
    expect((await node.propose(enc("v14"))).value).toBe("v14");
    expect(storage.snapshot().meta.index).toBe(snap.meta.index);
    await node.close();
    // The next process restores the image, then applies the rest of the committed log on top.
    const sm = new RegisterStateMachine();
    const restored: number[] = [];
    const applied: number[] = [];
    sm.onRestore = (index) => restored.push(index);
    sm.onApply = (e) => applied.push(e.index);
    const again = start(storage.reopen(), sm);
    for (let i = 0; i < 5 && sm.value !== "v14"; i++) await new Promise<void>((r) => setImmediate(r));
    expect(restored).toEqual([snap.meta.index]);
    expect(applied[0]).toBe(snap.meta.index + 1);
    expect(sm.value).toBe("v14");
    again.campaign();
    await new Promise<void>((r) => setImmediate(r));
    expect((await again.propose(enc("v13"))).value).toBe("v13");
  });
});

describe("RaftNode stopping", () => {
  test("close() fails what is pending, refuses new requests, and closes transport and storage", async () => {
    const c = new TestCluster([1, 2, 3]);
    const l = await c.elect(1);
    c.cut.add("1>2").add("1>3");
    const w = watch(l.node.propose(enc("pending")));
    const r = watch(l.node.readIndex());
    await c.settle();
    await l.node.close();
    await c.settle();
    expect(w.error).toBeInstanceOf(UnknownOutcomeError);
    expect(r.error).toBeInstanceOf(NodeClosedError);
    expect(await l.node.propose(enc("after")).catch((e: unknown) => e)).toBeInstanceOf(NodeClosedError);
    expect(() => l.storage.persist({ hardState: undefined, entries: [], snapshot: undefined })).toThrow("persist after close");
  });

  test("a failed persist stops the node: onFatal hears of it and pending proposals have an unknown outcome", async () => {
    const disk = new MemoryStorage();
    bootstrapStorage(disk, [1]);
    const storage = new MemoryRaftStorage(disk);
    let broken = false;
    const persist = storage.persist.bind(storage);
    storage.persist = (p) => (broken ? Promise.reject(new Error("disk on fire")) : persist(p));
    const fatal: unknown[] = [];
    const node = new RaftNode<RegisterResult>({
      id: 1,
      storage,
      transport: new MemoryNetwork().attach(1),
      stateMachine: new RegisterStateMachine(),
      rand: new Rand(1),
      onFatal: (err) => fatal.push(err),
    });
    await new Promise<void>((r) => setImmediate(r));
    node.campaign();
    await new Promise<void>((r) => setImmediate(r));
    expect((await node.propose(enc("ok"))).value).toBe("ok");
    broken = true;
    const err = await node.propose(enc("lost")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownOutcomeError);
    expect((fatal[0] as Error).message).toBe("disk on fire");
    expect(await node.readIndex().catch((e: unknown) => e)).toBeInstanceOf(NodeClosedError);
  });
});

describe("RaftNode Ready loop", () => {
  test("nothing of a Ready is sent before its persist completes (votes, acknowledgements), except a leader's appends of its durable term", async () => {
    const c = new TestCluster([1, 2, 3], new Set([1, 2, 3]));
    // Durable state of each node, as the disk holds it when each message is sent.
    const bad: string[] = [];
    c.net.route = (m) => {
      const disk = c.get(m.from).storage.disk;
      const hs = disk.getHardState();
      if (m.type !== "pre-vote" && m.type !== "pre-vote-resp" && m.term > hs.term) bad.push(`${m.from} sent ${m.type} of term ${m.term} with durable term ${hs.term}`);
      if (m.type === "vote" && hs.vote !== m.from) bad.push(`${m.from} asked for votes before its own vote was durable`);
      if (m.type === "vote-resp" && !m.reject && hs.vote !== m.to) bad.push(`${m.from} granted a vote before it was durable`);
      if (m.type === "append" && m.entries.length > 0 && disk.lastIndex() < (m.entries[m.entries.length - 1] as { index: number }).index) {
        // Allowed for the leader's own new entries once its term and vote are durable (it counts itself only after its write).
        const last = m.entries[m.entries.length - 1] as { term: number };
        if (!(last.term === m.term && hs.term === m.term && hs.vote === m.from)) bad.push(`${m.from} sent entries it has not persisted`);
      }
      if (m.type === "append-resp" && !m.reject && disk.lastIndex() < m.index) bad.push(`${m.from} acknowledged ${m.index} with durable last ${disk.lastIndex()}`);
      c.sent.push(m);
      c.net.queue.push(m);
    };
    await c.completeWrites();
    c.get(1).node.campaign();
    await c.settle();
    // The vote request waits for the durable vote: nothing was sent yet.
    expect(c.sent.filter((m) => m.type === "vote")).toEqual([]);
    for (let i = 0; i < 20 && c.get(1).node.status().role !== "leader"; i++) await c.completeWrites();
    for (let i = 0; i < 20 && c.get(1).node.persistInFlight; i++) await c.completeWrites(); // its no-op is written
    const w = watch(c.get(1).node.propose(enc("z")));
    await c.settle();
    // The leader's appends go out while its own write is in flight; the write is not acknowledged yet.
    expect(c.sent.filter((m) => m.type === "append" && m.entries.some((e) => e.data.length > 0)).length).toBeGreaterThan(0);
    expect(c.get(1).storage.disk.lastIndex()).toBeLessThan(c.get(1).node.status().lastIndex);
    expect(w.state).toBe("pending");
    for (let i = 0; i < 20 && w.state === "pending"; i++) await c.completeWrites();
    expect(w.state).toBe("resolved");
    expect(c.sent.filter((m) => m.type === "vote").length).toBeGreaterThan(0);
    expect(c.sent.filter((m) => m.type === "append" && m.entries.length > 0).length).toBeGreaterThan(0);
    expect(c.sent.filter((m) => m.type === "append-resp" && !m.reject).length).toBeGreaterThan(0);
    expect(bad).toEqual([]);
  });

  test("the state machine's applied index moves by exactly one (an entry applied twice is a crash)", async () => {
    const c = new TestCluster([1]);
    const n = c.get(1);
    await c.elect(1);
    await n.node.propose(enc("one"));
    // Feed the runtime's apply path an entry it already applied: the boundary assertion fires.
    expect(() => (n.node as unknown as { applyEntry(e: unknown): void }).applyEntry({ index: n.sm.applied, term: 1, type: "normal", data: enc("again") })).toThrow(
      "applied moves by one",
    );
  });
});
