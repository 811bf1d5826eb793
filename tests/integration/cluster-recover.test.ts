// Disaster recovery of a local cluster with the compiled binary, the commands of docs/operations.md
// ("Disaster recovery: a majority lost for good"): two of three nodes lost (kill -9), `kv cluster
// recover` refused while a node runs, `kv cluster down`, `kv cluster recover 1`; then cluster.json
// describes the new one-member cluster (new id, the lost nodes dropped and marked removed, node 1's
// recorded argv naming only itself), status is healthy without the lost members, `kv cluster add`
// twice grows it to three voters with new ids, `kv cluster restart` restarts exactly those, and
// every write acknowledged before the loss is still there.
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { readClusterFile } from "../../src/cli/cluster-layout.ts";
import { isAlive } from "../../src/cli/cluster-proc.ts";
import { createClient } from "../../src/client/index.ts";
import { KV_BIN } from "../helpers/server.ts";
import { clusterCliHarness, until, upDetached } from "../helpers/cluster-cli.ts";

const h = clusterCliHarness("kv-recover-it-");

async function statusJson(dir: string): Promise<{ code: number; s: { health: string; verdict: string; leader: number | null; nodes: { id: number; up: boolean; voter: boolean | null }[] } }> {
  const r = await h.kv("cluster", "status", "--data-dir", dir, "--json");
  return { code: r.code, s: JSON.parse(r.stdout) };
}

describe("kv cluster recover (a majority lost for good)", () => {
  test("the documented procedure: down, recover 1, add, add; cluster.json keeps only the new cluster's members; no acknowledged write lost", async () => {
    expect(existsSync(KV_BIN)).toBe(true);
    const { dir, addrs } = await upDetached(h, 3);
    const c = createClient({ addrs, timeoutMs: 10_000 });
    const keys = Array.from({ length: 200 }, (_, i) => `dr:${i}`);
    try {
      for (const k of keys) expect(await c.set(k, k)).toBe(true);
      // Acknowledged on a majority; node 1 must hold them all before the others go (it is the survivor).
      await until("node 1 caught up", 10_000, async () => {
        const one = createClient({ addrs: addrs[0]!, timeoutMs: 2000, readRetriesMax: 0 });
        try {
          return (await one.command(["KV.READ", "STALE", "GET", keys[keys.length - 1]!])) === keys[keys.length - 1] ? true : undefined;
        } finally {
          one.destroy();
        }
      });
    } finally {
      c.destroy();
    }
    const before = readClusterFile(dir)!;
    for (const n of before.nodes.filter((n) => n.id !== 1)) process.kill(n.pid, "SIGKILL");
    await until("nodes 2 and 3 gone", 5_000, async () => (before.nodes.every((n) => n.id === 1 || !isAlive(n.pid)) ? true : undefined));
    const lost = await until("status: no quorum", 10_000, async () => {
      const st = await statusJson(dir);
      return st.s.health === "down" ? st : undefined;
    });
    expect(lost.code).toBe(2);

    // Refused while a node of the cluster runs; nothing changed.
    const refused = await h.kv("cluster", "recover", "1", "--data-dir", dir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`nodes of this cluster are running: n1 (pid ${before.nodes[0]!.pid}); stop them first`);
    expect(readClusterFile(dir)).toEqual(before);
    // Not a node of this cluster: refused.
    const unknown = await h.kv("cluster", "recover", "7", "--data-dir", dir);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain("node 7 is not in");

    expect((await h.kv("cluster", "down", "--data-dir", dir)).code).toBe(0);
    const rec = await h.kv("cluster", "recover", "1", "--data-dir", dir);
    expect(rec.stderr).toBe("");
    expect(rec.code).toBe(0);
    const after = readClusterFile(dir)!;
    h.started.push(after.nodes[0]!.pid);
    expect(rec.stdout).toContain(`n1 leads new cluster ${after.clusterId} alone (was ${before.clusterId}), its data kept`);
    expect(rec.stdout).toContain("dropped n2, n3 from cluster.json (marked removed)");
    expect(after.clusterId).not.toBe(before.clusterId);
    expect(after.nodes.map((n) => n.id)).toEqual([1]);
    expect(after.removed).toEqual([2, 3]);
    // Its recorded argv: itself alone, the new id, no --force-new-cluster (a restart must not make yet another cluster).
    const start = after.nodes[0]!.start;
    expect(start).not.toContain("--force-new-cluster");
    expect(start[start.indexOf("--cluster") + 1]).toBe(addrs[0] === undefined ? "" : `1=${addrs[0]}`);
    expect(start[start.indexOf("--cluster-id") + 1]).toBe(after.clusterId);

    const one = await statusJson(dir);
    expect(one.code).toBe(0);
    expect(one.s.verdict).toMatch(/^healthy: 1\/1 voters up, leader 1,/);
    expect(one.s.nodes.map((n) => n.id)).toEqual([1]);

    // Grown again: new ids (the lost ones are never given again), fresh data dirs.
    for (const id of [4, 5]) {
      const add = await h.kv("cluster", "add", "--data-dir", dir);
      expect(add.stderr).toBe("");
      expect(add.code).toBe(0);
      expect(add.stdout).toContain(`node ${id} is a voter`);
      h.started.push(readClusterFile(dir)!.nodes.find((n) => n.id === id)!.pid);
    }
    const three = await until("healthy with 3 voters", 15_000, async () => {
      const st = await statusJson(dir);
      return st.s.health === "healthy" && st.s.nodes.length === 3 ? st : undefined;
    });
    expect(three.s.verdict).toMatch(/^healthy: 3\/3 voters up/);
    expect(three.s.nodes.map((n) => [n.id, n.up, n.voter])).toEqual([
      [1, true, true],
      [4, true, true],
      [5, true, true],
    ]);

    // A rolling restart takes exactly the new cluster's members.
    const rr = await h.kv("cluster", "restart", "--data-dir", dir, "--timeout", "20");
    for (const n of readClusterFile(dir)!.nodes) h.started.push(n.pid);
    expect(rr.stderr).toBe("");
    expect(rr.code).toBe(0);
    expect(rr.stdout).toMatch(/^rolling restart of 3 node\(s\)/);
    expect(rr.stdout.match(/^n\d: back/gm)?.sort()).toEqual(["n1: back", "n4: back", "n5: back"]);
    expect(rr.stdout).not.toMatch(/\bn[23]\b/);

    // Every write acknowledged before the loss, on every member.
    for (const n of readClusterFile(dir)!.nodes) {
      const cl = createClient({ addrs: n.addr, timeoutMs: 10_000 });
      try {
        expect(await cl.mget(keys)).toEqual(keys);
      } finally {
        cl.destroy();
      }
    }
    expect((await h.kv("cluster", "down", "--data-dir", dir)).code).toBe(0);
  }, 120_000);
});
