// Cluster-aware clients against the compiled binary: redis-cli (ROLE, CLUSTER SLOTS, -c), ioredis's
// Cluster and node-redis's cluster client route every key to the leader. A node alone in its group
// is a valid cluster: the master of all 16384 slots.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Cluster } from "ioredis";
import { createCluster } from "redis";
import { startKv, type KvProcess } from "../helpers/server.ts";

async function redisCli(port: number, args: string[]): Promise<{ out: string; code: number }> {
  const p = Bun.spawn(["redis-cli", "-h", "127.0.0.1", "-p", String(port), ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  const code = await p.exited;
  return { out, code };
}

/** Keys spread over many slots (Redis Cluster hashes each to one of 16384). */
const KEYS = Array.from({ length: 50 }, (_, i) => `k:${i}:${"x".repeat(i % 7)}`);

describe("a one-member group", () => {
  let kv: KvProcess;
  beforeAll(async () => {
    kv = await startKv();
  });
  afterAll(async () => {
    await kv?.stop();
  });

  test("redis-cli ROLE, CLUSTER SLOTS, CLUSTER INFO, CLUSTER MYID", async () => {
    const myid = (await redisCli(kv.port, ["cluster", "myid"])).out.trim();
    expect(myid).toMatch(/^[0-9a-f]{40}$/);
    expect(await redisCli(kv.port, ["set", "before", "1"])).toEqual({ out: "OK\n", code: 0 });
    const applied = /raft_applied_index:(\d+)/.exec((await redisCli(kv.port, ["info", "raft"])).out)![1]!;
    expect(Number(applied)).toBeGreaterThanOrEqual(1);
    expect(await redisCli(kv.port, ["--no-raw", "role"])).toEqual({ out: `1) "master"\n2) (integer) ${applied}\n3) (empty array)\n`, code: 0 });
    expect((await redisCli(kv.port, ["--no-raw", "cluster", "slots"])).out).toBe(
      `1) 1) (integer) 0\n   2) (integer) 16383\n   3) 1) "127.0.0.1"\n      2) (integer) ${kv.port}\n      3) "${myid}"\n      4) (empty array)\n`,
    );
    const info = (await redisCli(kv.port, ["cluster", "info"])).out;
    expect(info).toContain("cluster_state:ok\r\n");
    expect(info).toContain("cluster_known_nodes:1\r\n");
    // The bus port is the node's peer port: none without --peer-port (nobody dials a group of one),
    // so 0. The config epoch is the Raft term (the sole voter's election at start made it 2 or more).
    const term = /raft_term:(\d+)/.exec((await redisCli(kv.port, ["info", "raft"])).out)![1]!;
    expect(Number(term)).toBeGreaterThanOrEqual(2);
    expect((await redisCli(kv.port, ["cluster", "nodes"])).out).toBe(`${myid} 127.0.0.1:${kv.port}@0 myself,master - 0 0 ${term} connected 0-16383\n`);
    const repl = (await redisCli(kv.port, ["info", "replication"])).out;
    expect(repl).toContain("role:master\r\nconnected_slaves:0\r\n");
    expect((await redisCli(kv.port, ["info", "cluster"])).out).toBe("# Cluster\r\ncluster_enabled:1\r\n");
  });

  test("redis-cli -c: set and get", async () => {
    for (const k of KEYS.slice(0, 5)) expect(await redisCli(kv.port, ["-c", "set", k, `v-${k}`])).toEqual({ out: "OK\n", code: 0 });
    for (const k of KEYS.slice(0, 5)) expect(await redisCli(kv.port, ["-c", "get", k])).toEqual({ out: `v-${k}\n`, code: 0 });
  });

  test("ioredis Cluster: the node is the master of every slot", async () => {
    const c = new Cluster([{ host: "127.0.0.1", port: kv.port }], { lazyConnect: true });
    await c.connect();
    try {
      expect(c.nodes("master").map((n) => n.options.port)).toEqual([kv.port]);
      expect(c.nodes("slave")).toEqual([]);
      for (const k of KEYS) expect(await c.set(k, `io-${k}`)).toBe("OK");
      expect(await c.mget(KEYS[0]!)).toEqual([`io-${KEYS[0]!}`]);
      for (const k of KEYS) expect(await c.get(k)).toBe(`io-${k}`);
      expect(await c.incr("io:n")).toBe(1);
    } finally {
      c.disconnect();
    }
  });

  test("node-redis cluster client", async () => {
    const c = createCluster({ rootNodes: [{ url: `redis://127.0.0.1:${kv.port}` }] });
    await c.connect();
    try {
      for (const k of KEYS.slice(0, 10)) expect(await c.set(k, `nr-${k}`)).toBe("OK");
      for (const k of KEYS.slice(0, 10)) expect(await c.get(k)).toBe(`nr-${k}`);
      expect(c.masters.map((m) => m.port)).toEqual([kv.port]);
    } finally {
      await c.close();
    }
  });
});
