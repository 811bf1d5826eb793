// scripts/bench-cluster.ts --quick --no-etcd against the built ./kv: it starts a single node and a
// 3-node cluster, finds the leader, and measures every target (single, cluster leader, cluster
// spread over all nodes) at -P 1 and -P 16, SET and GET, with per-node CPU. No figure is judged here
// (the machine is shared); the test checks that the benchmark runs and reports what it says it does.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { tempDirs } from "../helpers/tmp.ts";

const ROOT = join(import.meta.dir, "../..");
const tempDir = tempDirs("kv-bench-cluster-test-");

interface KvRun {
  target: string;
  pipeline: number;
  test: string;
  requests: number;
  ops: number;
  p50Ms: number;
  p99Ms: number;
  nodeCpuUsPerOp: number[];
  leaderId: number;
}

test("bench-cluster --quick measures the single node, the cluster's leader and all its nodes", async () => {
  const json = join(tempDir(), "out.json");
  const p = Bun.spawn(["bun", "scripts/bench-cluster.ts", "--quick", "--no-etcd", "--retries", "0", "--requests", "3000", "--json", json], {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, KV_BENCH_IDLE_MAX_MS: "0" },
  });
  const killer = setTimeout(() => p.kill("SIGKILL"), 50_000);
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(killer);
  if (code !== 0) throw new Error(`exit ${code}\n${out.slice(-3000)}\n${err.slice(-3000)}`);
  const saved = JSON.parse(readFileSync(json, "utf8")) as { kvRuns: KvRun[]; etcdRuns: unknown[]; ratios: Array<{ name: string; value: number }> };
  expect(saved.etcdRuns).toEqual([]);
  const seen = saved.kvRuns.map((r) => `${r.target} ${r.test} -P ${r.pipeline}`).sort();
  const want: string[] = [];
  for (const t of ["single", "cluster-leader", "cluster-spread"]) for (const test of ["set", "get"]) for (const p of [1, 16]) want.push(`${t} ${test} -P ${p}`);
  expect(seen).toEqual(want.sort());
  const setCpuS = [0, 0, 0];
  for (const r of saved.kvRuns) {
    expect(r.requests).toBe(3000);
    expect(r.ops).toBeGreaterThan(0);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
    expect(r.nodeCpuUsPerOp.length).toBe(r.target === "single" ? 1 : 3);
    if (r.target !== "single") expect([1, 2, 3]).toContain(r.leaderId);
    if (r.target !== "single" && r.test === "set") r.nodeCpuUsPerOp.forEach((us, i) => (setCpuS[i]! += (us * r.requests) / 1e6));
  }
  // Every node of the cluster appends and applies every write: each spent CPU on the SET runs
  // (summed over the runs: /proc counts CPU in 10 ms ticks, more than one short run may use).
  for (const s of setCpuS) expect(s).toBeGreaterThan(0);
  expect(saved.ratios.map((r) => r.name)).toContain("kv cluster-leader / single node, durable SET -P 1, ops/s");
}, 60_000);
