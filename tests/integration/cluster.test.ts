// A 3-node cluster of real processes: every node answers every command (writes forwarded to the
// leader, linearizable reads everywhere), failover after kill -9, a restarted node catches up
// (from the log, and from a snapshot once the log was compacted), expiry decided by the leader.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { RawResp } from "../helpers/resp-raw.ts";

async function call(port: number, ...cmds: string[][]): Promise<string[]> {
  const c = await RawResp.connect(port);
  try {
    return await c.call(cmds, 10_000);
  } finally {
    c.close();
  }
}

/** Retries a command while the cluster answers "retry" errors (an election in progress), bounded. */
async function callUntil(port: number, argv: string[], timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    last = (await call(port, argv))[0]!;
    if (!/^-(CLUSTERDOWN|TRYAGAIN)/.test(last)) return last;
    await Bun.sleep(50);
  }
  throw new Error(`still refused after ${timeoutMs} ms: ${last}`);
}

describe("a 3-node cluster", () => {
  let c: TestCluster;
  beforeAll(async () => {
    c = await startCluster(3, ["--snapshot-log-bytes", "64kb", "--wal-segment-bytes", "16kb"]);
  });
  afterAll(async () => {
    await c?.stopAll();
  });

  test("every node takes writes and reads; a write on one is read on every other at once", async () => {
    const lead = await c.leader();
    for (const n of c.nodes) {
      expect(await callUntil(n.port, ["SET", `k${n.id}`, `v${n.id}`])).toBe("+OK\r\n");
      // Linearizable: a read on any node right after the acknowledgement sees the write.
      for (const m of c.nodes) expect((await call(m.port, ["GET", `k${n.id}`]))[0]).toBe(`$2\r\nv${n.id}\r\n`);
    }
    expect(lead).toBeGreaterThan(0);
    // Replies forwarded from the leader keep their meaning and protocol.
    const follower = c.nodes.find((n) => n.id !== lead)!;
    expect(await call(follower.port, ["INCR", "ctr"], ["INCR", "ctr"], ["SET", "k1", "x", "NX"], ["GET", "nope"])).toEqual([":1\r\n", ":2\r\n", "$-1\r\n", "$-1\r\n"]);
    const r3 = await RawResp.connect(follower.port);
    try {
      const [hello, ...rest] = await r3.call([["HELLO", "3"], ["SET", "k1", "y", "NX"], ["SET", "h", "1", "GET"], ["GET", "h"]]);
      expect(hello!.startsWith("%")).toBe(true);
      expect(rest).toEqual(["_\r\n", "_\r\n", "$1\r\n1\r\n"]);
    } finally {
      r3.close();
    }
  });

  test("pipelined writes and reads on a follower keep their order (a read sees the writes before it)", async () => {
    const lead = await c.leader();
    const follower = c.nodes.find((n) => n.id !== lead)!;
    const cmds: string[][] = [];
    const want: string[] = [];
    for (let i = 0; i < 200; i++) {
      cmds.push(["SET", "p", String(i)], ["GET", "p"], ["APPEND", "log", "."]);
      want.push("+OK\r\n", `$${String(i).length}\r\n${i}\r\n`, `:${i + 1}\r\n`);
    }
    expect(await call(follower.port, ...cmds)).toEqual(want);
  });

  test("kill -9 of the leader: a new one is elected, no acknowledged write is lost, the old one catches up on restart", async () => {
    const lead = await c.leader();
    const others = c.nodes.filter((n) => n.id !== lead);
    for (let i = 0; i < 50; i++) expect(await callUntil(others[0]!.port, ["SET", `before${i}`, String(i)])).toBe("+OK\r\n");
    await c.stop(lead, "SIGKILL");
    const t0 = Date.now();
    expect(await callUntil(others[1]!.port, ["SET", "after", "1"])).toBe("+OK\r\n");
    const failoverMs = Date.now() - t0;
    expect(failoverMs).toBeLessThan(10_000); // bounded wait, not a performance check
    for (let i = 0; i < 50; i++) expect((await call(others[1]!.port, ["GET", `before${i}`]))[0]).toBe(`$${String(i).length}\r\n${i}\r\n`);
    const newLead = await c.leader();
    expect(newLead).not.toBe(lead);
    // Enough writes for the 64kb snapshot threshold to compact the log on the survivors.
    const big = "x".repeat(1000);
    for (let i = 0; i < 20; i++) {
      const batch: string[][] = [];
      for (let j = 0; j < 10; j++) batch.push(["SET", `big${i}-${j}`, big]);
      expect(new Set(await call(others[0]!.port, ...batch))).toEqual(new Set(["+OK\r\n"]));
    }
    await c.start(lead);
    const back = c.nodes[lead - 1]!;
    expect(await callUntil(back.port, ["GET", "after"])).toBe("$1\r\n1\r\n");
    expect((await call(back.port, ["GET", "big19-9"]))[0]).toBe(`$1000\r\n${big}\r\n`);
    expect((await call(back.port, ["DBSIZE"]))[0]).toBe((await call(others[0]!.port, ["DBSIZE"]))[0]);
    // Its log ended before what the others kept: it caught up from the leader's snapshot.
    expect(back.proc!.output()).toMatch(/installed the leader's snapshot at index \d+ \(\d+ keys\)/);
  });

  test("a leader stopped gracefully (SIGTERM) hands leadership to a follower first", async () => {
    const lead = await c.leader();
    const proc = c.nodes[lead - 1]!.proc!;
    await c.stop(lead, "SIGTERM");
    expect(proc.output()).toMatch(/handed leadership to node \d+/);
    const other = c.nodes.find((n) => n.id !== lead)!;
    expect(await callUntil(other.port, ["SET", "after-handover", "1"])).toBe("+OK\r\n");
    await c.start(lead);
    expect(await callUntil(c.nodes[lead - 1]!.port, ["GET", "after-handover"])).toBe("$1\r\n1\r\n");
  });

  test("a key with a TTL expires on every node (the leader logs its deletion)", async () => {
    const lead = await c.leader();
    const sizes = async () => Promise.all(c.nodes.map(async (n) => (await call(n.port, ["DBSIZE"]))[0]));
    const before = await sizes();
    expect(new Set(before).size).toBe(1);
    expect(await callUntil(c.nodes[lead - 1]!.port, ["SET", "ttl", "v", "PX", "150"])).toBe("+OK\r\n");
    for (const n of c.nodes) expect((await call(n.port, ["GET", "ttl"]))[0]).toBe("$1\r\nv\r\n");
    await Bun.sleep(400);
    for (const n of c.nodes) expect((await call(n.port, ["EXISTS", "ttl"]))[0]).toBe(":0\r\n");
    // DBSIZE counts a key until it is deleted: every node applied the leader's expiration entry.
    const deadline = Date.now() + 5000;
    let after = await sizes();
    while (after.some((x) => x !== before[0]) && Date.now() < deadline) {
      await Bun.sleep(50);
      after = await sizes();
    }
    expect(after).toEqual(before);
  });

  test("without a quorum, writes are refused and reads are not served from a minority", async () => {
    const lead = await c.leader();
    const others = c.nodes.filter((n) => n.id !== lead);
    await c.stop(others[0]!.id, "SIGKILL");
    await c.stop(others[1]!.id, "SIGKILL");
    const deadline = Date.now() + 5000;
    let w = "";
    // check-quorum: the lone leader steps down within an election timeout or two.
    while (Date.now() < deadline) {
      w = (await call(c.nodes[lead - 1]!.port, ["SET", "minority", "1"]))[0]!;
      if (w !== "+OK\r\n") break;
      await Bun.sleep(50);
    }
    expect(w).toMatch(/^-(CLUSTERDOWN|UNCERTAIN|TRYAGAIN)/);
    expect((await call(c.nodes[lead - 1]!.port, ["GET", "after"]))[0]).toMatch(/^-(CLUSTERDOWN|TRYAGAIN)/);
    await c.start(others[0]!.id);
    await c.start(others[1]!.id);
    expect(await callUntil(c.nodes[lead - 1]!.port, ["GET", "after"])).toBe("$1\r\n1\r\n");
  });
});
