// The TCP peer transport over real loopback sockets: delivery of every message type, reconnection,
// refused handshakes, bounded queues for a dead or slow peer, and garbage on the peer port.
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { encodeHandshake, encodeMessage } from "../../src/raft/codec.ts";
import { Rand } from "../../src/raft/rand.ts";
import type { Message, NodeId } from "../../src/raft/types.ts";
import { PEER_QUEUE_MESSAGES_MAX, TcpTransport, type TcpTransportConfig } from "../../src/node/tcp-transport.ts";
import { MemoryRaftStorage } from "../../src/node/memory-storage.ts";
import { RaftNode } from "../../src/node/raft-node.ts";
import { RegisterStateMachine, type RegisterResult } from "../../src/node/state-machine.ts";
import { Ticker } from "../../src/node/ticker.ts";
import { MemoryStorage, bootstrapStorage } from "../../src/raft/storage.ts";
import { EVERY_MESSAGE } from "../helpers/raft-messages.ts";

const HOST = "127.0.0.1";
const open: TcpTransport[] = [];
const rawSockets: { end(): void }[] = [];

afterEach(() => {
  for (const t of open.splice(0)) t.close();
  for (const s of rawSockets.splice(0)) s.end();
});

interface Node {
  t: TcpTransport;
  got: Message[];
  logs: string[];
  unreachable: NodeId[];
  addr: string;
}

function node(id: NodeId, extra: Partial<TcpTransportConfig> = {}): Node {
  const logs: string[] = [];
  const unreachable: NodeId[] = [];
  const rand = new Rand(id);
  const t = new TcpTransport({
    id,
    clusterId: "test-cluster",
    listen: { host: HOST, port: 0 },
    peers: new Map(),
    random: () => rand.float(),
    backoffMsMin: 10,
    backoffMsMax: 100,
    onUnreachable: (p) => unreachable.push(p),
    log: {
      info: (...a) => logs.push(a.join(" ")),
      warn: (...a) => logs.push(a.join(" ")),
      debug: (...a) => logs.push(a.join(" ")),
    },
    ...extra,
  });
  open.push(t);
  const got: Message[] = [];
  t.onMessage((m) => got.push(m));
  return { t, got, logs, unreachable, addr: `${HOST}:${t.port}` };
}

/** Waits until `cond()` holds, polling; false after `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) return false;
    await Bun.sleep(5);
  }
  return true;
}

function addressed(m: Message, from: NodeId, to: NodeId): Message {
  return { ...m, from, to } as Message;
}

function heartbeat(from: NodeId, to: NodeId, i: number): Message {
  return { type: "heartbeat", from, to, term: 1, commit: i, leaderCommit: i, ctx: "" };
}

/** A port nobody listens on: one a listener just gave back. */
function deadPort(): number {
  const l = Bun.listen({ hostname: HOST, port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

describe("TcpTransport", () => {
  test("three transports exchange messages of every type, in order per link", async () => {
    const nodes = [node(1), node(2), node(3)];
    for (const a of nodes) for (const b of nodes) if (a !== b) a.t.addPeer(b.t.id, b.addr);
    const expected = new Map<NodeId, Message[]>(nodes.map((n) => [n.t.id, []]));
    for (const a of nodes) {
      for (const b of nodes) {
        if (a === b) continue;
        const msgs = EVERY_MESSAGE.map((m) => addressed(m, a.t.id, b.t.id));
        a.t.send(msgs);
        expected.get(b.t.id)!.push(...msgs);
      }
    }
    const total = EVERY_MESSAGE.length * 2;
    expect(await until(() => nodes.every((n) => n.got.length >= total), 10_000)).toBe(true);
    for (const n of nodes) {
      // Per sender, the order is the order sent; across senders, any interleaving.
      for (const from of [1, 2, 3].filter((x) => x !== n.t.id)) {
        expect(n.got.filter((m) => m.from === from)).toEqual(expected.get(n.t.id)!.filter((m) => m.from === from));
      }
      expect(n.t.stats.sent).toBe(total);
      expect(n.t.stats.received).toBe(total);
      expect(n.t.stats.dropped).toBe(0);
    }
  });

  test("a peer that restarts on its port is reconnected and messages flow again", async () => {
    const a = node(1);
    let b = node(2);
    const port = b.t.port;
    a.t.addPeer(2, b.addr);
    b.t.addPeer(1, a.addr);
    a.t.send([heartbeat(1, 2, 1)]);
    expect(await until(() => b.got.length === 1)).toBe(true);

    b.t.close();
    expect(await until(() => a.t.peerStatus(2)?.connected === false)).toBe(true);
    expect(a.unreachable).toContain(2);
    a.t.send([heartbeat(1, 2, 2)]); // queued while it is down
    await Bun.sleep(150); // a few failed attempts
    const reconnects = a.t.stats.reconnects;
    expect(reconnects).toBeGreaterThan(1);

    b = node(2, { listen: { host: HOST, port } });
    b.t.addPeer(1, a.addr);
    let i = 3;
    // Keep sending (as Raft's heartbeats do) until the new incarnation hears one.
    const flowed = await until(() => {
      a.t.send([heartbeat(1, 2, i++)]);
      return b.got.length > 0;
    });
    expect(flowed).toBe(true);
    expect(b.got[0]!.type).toBe("heartbeat");
    expect(a.t.peerStatus(2)?.connected).toBe(true);
  });

  test("handshakes of another cluster, to another node id, or from an unknown node are refused with a log line", async () => {
    const a = node(1);
    const other = node(2, { clusterId: "other-cluster" });
    const wrongTo = node(3);
    const stranger = node(9);
    a.t.addPeer(2, other.addr);
    a.t.addPeer(3, wrongTo.addr);
    other.t.addPeer(1, a.addr);
    wrongTo.t.addPeer(5, a.addr); // believes node 5 listens at a's address
    stranger.t.addPeer(1, a.addr);
    const keepSending = () => {
      other.t.send([heartbeat(2, 1, 1)]);
      wrongTo.t.send([heartbeat(3, 5, 1)]);
      stranger.t.send([heartbeat(9, 1, 1)]);
    };
    const refusedAll = await until(() => {
      keepSending();
      return a.logs.some((l) => l.includes('cluster "other-cluster"')) && a.logs.some((l) => l.includes("addressed node 5")) && a.logs.some((l) => l.includes("node 9 is not a known peer"));
    });
    expect(refusedAll).toBe(true);
    expect(a.t.stats.refusedHandshakes).toBeGreaterThanOrEqual(3);
    expect(a.got).toEqual([]);
    expect(a.t.stats.received).toBe(0);
    // The refused keep being refused (with backoff), and a's own peers still reach it.
    a.t.addPeer(4, "127.0.0.1:1");
    const good = node(3);
    a.t.addPeer(3, good.addr);
    good.t.addPeer(1, a.addr);
    expect(await until(() => (good.t.send([heartbeat(3, 1, 7)]), a.got.length > 0))).toBe(true);
    expect(a.got.every((m) => m.from === 3)).toBe(true);
  });

  test("a dead peer: 100k messages keep its queue at the bound and the rest are counted as dropped", async () => {
    const a = node(1);
    a.t.addPeer(2, `${HOST}:${deadPort()}`);
    const N = 100_000;
    for (let i = 0; i < N; i += 1000) {
      const batch: Message[] = [];
      for (let j = i; j < i + 1000; j++) batch.push(heartbeat(1, 2, j));
      a.t.send(batch);
    }
    const st = a.t.peerStatus(2)!;
    expect(st.connected).toBe(false);
    expect(st.queuedMessages).toBe(PEER_QUEUE_MESSAGES_MAX);
    expect(a.t.stats.dropped).toBe(N - PEER_QUEUE_MESSAGES_MAX);
    expect(a.unreachable).toContain(2);
    await Bun.sleep(50);
    expect(a.t.peerStatus(2)!.queuedMessages).toBe(PEER_QUEUE_MESSAGES_MAX);
  });

  test("a slow peer that never reads: queued bytes stay under the byte bound", async () => {
    const BOUND = 256 * 1024;
    const a = node(1, { queueBytesMax: BOUND });
    const stalled: Socket<undefined>[] = [];
    const l = Bun.listen({
      hostname: HOST,
      port: 0,
      socket: {
        open: (s) => {
          s.pause();
          stalled.push(s);
        },
        data() {},
      },
    });
    rawSockets.push({ end: () => l.stop(true) });
    a.t.addPeer(2, `${HOST}:${l.port}`);
    expect(await until(() => a.t.peerStatus(2)?.connected === true)).toBe(true);
    const data = new Uint8Array(16 * 1024);
    let maxQueued = 0;
    const start = performance.now();
    // Bounded by count (10k messages of 16 KiB: 160 MiB offered) and time.
    for (let i = 0; i < 10_000 && performance.now() - start < 10_000; i++) {
      a.t.send([{ type: "append", from: 1, to: 2, term: 1, logIndex: i, logTerm: 1, commit: 0, entries: [{ index: i + 1, term: 1, type: "normal", data }] }]);
      maxQueued = Math.max(maxQueued, a.t.peerStatus(2)!.queuedBytes);
      if (i % 100 === 0) await Bun.sleep(0);
    }
    expect(maxQueued).toBeLessThanOrEqual(BOUND);
    expect(a.t.stats.dropped).toBeGreaterThan(5_000); // the kernel buffers take a few MiB at most
    expect(a.t.stats.sent + a.t.stats.dropped + a.t.peerStatus(2)!.queuedMessages).toBe(10_000);
    expect(stalled.length).toBe(1);
  });

  test("a connection whose socket takes nothing for writeStallMs is closed and redialled", async () => {
    const a = node(1, { writeStallMs: 300 });
    const seen = { opened: 0 };
    const l = Bun.listen({
      hostname: HOST,
      port: 0,
      socket: {
        open: (s) => {
          seen.opened++;
          s.pause();
        },
        data() {},
      },
    });
    rawSockets.push({ end: () => l.stop(true) });
    a.t.addPeer(2, `${HOST}:${l.port}`);
    expect(await until(() => a.t.peerStatus(2)?.connected === true)).toBe(true);
    const data = new Uint8Array(64 * 1024);
    // Fill the kernel buffers (a few MiB on loopback): bounded by count and time.
    const start = performance.now();
    for (let i = 0; i < 2000 && a.t.peerStatus(2)!.queuedMessages < 50 && performance.now() - start < 5000; i++) {
      a.t.send([{ type: "append", from: 1, to: 2, term: 1, logIndex: i, logTerm: 1, commit: 0, entries: [{ index: i + 1, term: 1, type: "normal", data }] }]);
      await Bun.sleep(0);
    }
    expect(a.t.peerStatus(2)!.queuedMessages).toBeGreaterThanOrEqual(50);
    expect(await until(() => seen.opened >= 2, 5000)).toBe(true);
    expect(a.logs.some((l) => l.includes("no write progress for 300 ms"))).toBe(true);
  });

  test("garbage on the peer port is logged and closed; the node keeps serving its peers", async () => {
    const a = node(1);
    const b = node(2);
    a.t.addPeer(2, b.addr);
    b.t.addPeer(1, a.addr);
    const rand = new Rand(7);
    // 1) random bytes with no handshake; 2) a valid handshake, then garbage.
    for (const withHandshake of [false, true]) {
      const closed = { v: false };
      const s = await Bun.connect({ hostname: HOST, port: a.t.port, socket: { data() {}, close: () => void (closed.v = true) } });
      rawSockets.push(s);
      if (withHandshake) s.write(encodeHandshake({ clusterId: "test-cluster", from: 2, to: 1 }));
      const junk = new Uint8Array(300);
      for (let i = 0; i < junk.length; i++) junk[i] = rand.int(256);
      junk.set([1, 0, 0, 0, 7], 0); // a small length: the body is read and rejected
      s.write(junk);
      expect(await until(() => closed.v)).toBe(true);
    }
    expect(a.t.stats.badFrames).toBe(2);
    expect(a.logs.filter((l) => l.startsWith("closed the connection")).length).toBe(2);
    expect(a.logs.some((l) => l.includes("peer 2 from 127.0.0.1"))).toBe(true);
    // A message claiming another sender on peer 2's connection is also refused.
    const s = await Bun.connect({ hostname: HOST, port: a.t.port, socket: { data() {} } });
    rawSockets.push(s);
    s.write(encodeHandshake({ clusterId: "test-cluster", from: 2, to: 1 }));
    s.write(encodeMessage(heartbeat(3, 1, 1)));
    expect(await until(() => a.t.stats.badFrames === 3)).toBe(true);
    expect(a.got).toEqual([]);
    // Still serving: b's messages arrive.
    expect(await until(() => (b.t.send([heartbeat(2, 1, 5)]), a.got.length > 0))).toBe(true);
    expect(a.got[0]).toMatchObject({ from: 2, commit: 5 });
  });

  test("connections that owe their handshake are closed after the timeout, and at most 64 wait at once", async () => {
    const a = node(1, { handshakeTimeoutMs: 300 });
    const closedAt: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < 65; i++) {
      const s = await Bun.connect({ hostname: HOST, port: a.t.port, socket: { data() {}, close: () => void closedAt.push(performance.now() - t0) } });
      rawSockets.push(s);
    }
    // The 65th is closed at once; the 64 others when their handshake is overdue.
    expect(await until(() => closedAt.length === 1, 250)).toBe(true);
    expect(a.logs.some((l) => l.includes("64 connections already owe a handshake"))).toBe(true);
    expect(await until(() => closedAt.length === 65)).toBe(true);
    expect(closedAt[64]!).toBeGreaterThanOrEqual(250);
    expect(a.logs.filter((l) => l.includes("no handshake within 300 ms")).length).toBe(64);
    expect(a.t.stats.refusedHandshakes).toBe(64);
  });

  test("close() closes every connection and the listener, and stops reconnecting", async () => {
    const a = node(1);
    const seen = { opened: 0, closed: 0 };
    const l = Bun.listen({ hostname: HOST, port: 0, socket: { open: () => void seen.opened++, close: () => void seen.closed++, data() {} } });
    rawSockets.push({ end: () => l.stop(true) });
    a.t.addPeer(2, `${HOST}:${l.port}`);
    a.t.addPeer(3, `${HOST}:${deadPort()}`);
    expect(await until(() => seen.opened === 1 && a.t.stats.reconnects > 0)).toBe(true);
    a.t.close();
    expect(await until(() => seen.closed === 1)).toBe(true);
    const r = a.t.stats.reconnects;
    await Bun.sleep(250); // longer than backoffMsMax
    expect(a.t.stats.reconnects).toBe(r);
    expect(seen.opened).toBe(1);
    const refused = await Bun.connect({ hostname: HOST, port: a.t.port, socket: { data() {} } }).then(
      (s) => (s.end(), false),
      () => true,
    );
    expect(refused).toBe(true);
  });
});

test("three RaftNodes over TcpTransport elect a leader, replicate, and fail over when the leader stops", async () => {
  const ids = [1, 2, 3];
  const quiet = { info() {}, warn() {}, debug() {} };
  const rafts = new Map<NodeId, { raft: RaftNode<RegisterResult>; sm: RegisterStateMachine; ticker: Ticker; t: TcpTransport }>();
  for (const id of ids) {
    const disk = new MemoryStorage();
    bootstrapStorage(disk, ids);
    const sm = new RegisterStateMachine();
    const t = new TcpTransport({ id, clusterId: "raft", listen: { host: HOST, port: 0 }, peers: new Map(), backoffMsMin: 10, backoffMsMax: 100, log: quiet });
    open.push(t);
    const raft = new RaftNode<RegisterResult>({ id, storage: new MemoryRaftStorage(disk), transport: t, stateMachine: sm, rand: new Rand(id), raft: { electionTicks: 10, heartbeatTicks: 1 } });
    rafts.set(id, { raft, sm, ticker: new Ticker(raft, 10), t });
  }
  for (const a of rafts.values()) for (const b of rafts.values()) if (a !== b) a.t.addPeer(b.t.id, `${HOST}:${b.t.port}`);
  for (const r of rafts.values()) r.ticker.start();
  try {
    const leaderOf = (among: NodeId[]) => among.find((id) => rafts.get(id)!.raft.status().role === "leader");
    expect(await until(() => leaderOf(ids) !== undefined, 10_000)).toBe(true);
    const first = leaderOf(ids)!;
    await rafts.get(first)!.raft.propose(new TextEncoder().encode("x"));
    expect(await until(() => ids.every((id) => rafts.get(id)!.sm.value === "x"), 10_000)).toBe(true);

    const r = rafts.get(first)!;
    r.ticker.stop();
    await r.raft.close();
    const rest = ids.filter((id) => id !== first);
    expect(await until(() => leaderOf(rest) !== undefined, 10_000)).toBe(true);
    await rafts.get(leaderOf(rest)!)!.raft.propose(new TextEncoder().encode("y"));
    expect(await until(() => rest.every((id) => rafts.get(id)!.sm.value === "y"), 10_000)).toBe(true);
  } finally {
    for (const r of rafts.values()) {
      r.ticker.stop();
      await r.raft.close();
    }
  }
});
