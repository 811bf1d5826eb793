// A longer fault run on demand: a cluster of ./kv processes behind fault proxies, clients on every node,
// a nemesis (kill -9 / restart, SIGSTOP / SIGCONT, partitions), the history checked for linearizability;
// then the failover time over repeated kill -9s of the leader. Prints a summary.
//
//   bun run build && bun scripts/chaos.ts [--duration 600] [--seed N] [--nodes 3] [--clients 8]
//                                        [--keys 6] [--failover-kills 10] [--snapshot-kb 64] [--keep]
//                                        [--heartbeat-ms 50] [--election-ms 300] [--unsafe-local-reads] [--lease-reads]
//                                        [--faults kill=3,crash=1,transfer=2,...]  (only these kinds, with these weights)
//                                        [--fsync-delay-ms N]  (every node's fdatasync waits N ms: a slow disk)
//                                        [--reads 50]  (percent of GETs; the rest SET 25 : DEL 10 : SET NX 15)
// Nodes snapshot every --snapshot-kb of log (small, so snapshots, compaction and catch-up from a
// snapshot happen under the faults; 0: the default threshold). --unsafe-local-reads starts every node
// with KV_TEST_UNSAFE_LOCAL_READS=1 (reads without ReadIndex): the run should then be found not linearizable.
// --lease-reads starts every node with --lease-reads (the leader's lease-based reads).
// Exit status 1 if the history is not linearizable (or the checker could not decide), 0 otherwise.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { historyExcerpt, measureFailover, medianMax, recoveryTimes, runChaos } from "../tests/helpers/chaos-run.ts";
import { formatStats } from "../tests/helpers/chaos-workload.ts";
import { formatFaults } from "../tests/helpers/nemesis.ts";
import { ProcCluster } from "../tests/helpers/proc-cluster.ts";

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${name}: not a non-negative integer: ${process.argv[i + 1]}`);
  return v;
}

const durationS = flag("duration", 60);
const seed = flag("seed", Math.floor(Math.random() * 2 ** 31));
const nodes = flag("nodes", 3);
const clients = flag("clients", 8);
const keys = flag("keys", 6);
const kills = flag("failover-kills", 10);
const snapshotKb = flag("snapshot-kb", 64);
const extraArgs = [...(snapshotKb > 0 ? ["--snapshot-log-bytes", `${snapshotKb}kb`, "--wal-segment-bytes", "16kb"] : []), ...(process.argv.includes("--lease-reads") ? ["--lease-reads"] : [])];
const keep = process.argv.includes("--keep");
const unsafe = process.argv.includes("--unsafe-local-reads");
const heartbeatMs = flag("heartbeat-ms", 50);
const fsyncDelayMs = flag("fsync-delay-ms", 0);
const readPct = Math.min(100, flag("reads", 50));
const mix = { get: readPct, set: ((100 - readPct) * 25) / 50, del: ((100 - readPct) * 10) / 50, setnx: ((100 - readPct) * 15) / 50 };
const env: Record<string, string> = {
  ...(unsafe ? { KV_TEST_UNSAFE_LOCAL_READS: "1" } : {}),
  ...(fsyncDelayMs > 0 ? { KV_TEST_FSYNC_DELAY_MS: String(fsyncDelayMs) } : {}),
};
const electionMs = flag("election-ms", 300);
const faultsArg = process.argv.indexOf("--faults");
const KINDS = ["kill", "pause", "isolate", "bridge", "split", "oneway", "slow", "crash", "transfer"];
let weights: Record<string, number> | undefined;
if (faultsArg >= 0) {
  weights = Object.fromEntries(KINDS.map((k) => [k, 0]));
  for (const part of (process.argv[faultsArg + 1] ?? "").split(",")) {
    const [k, w = "1"] = part.split("=");
    if (!KINDS.includes(k ?? "") || !(Number(w) >= 0)) throw new Error(`--faults: bad entry ${JSON.stringify(part)} (kinds: ${KINDS.join(", ")})`);
    weights[k as string] = Number(w);
  }
}

const dir = mkdtempSync(join(tmpdir(), "kv-chaos-"));
const stamp = (): string => `[${((performance.now() - t0) / 1000).toFixed(1)}s]`;
const t0 = performance.now();
const log = (l: string): void => console.log(`${stamp()} ${l}`);
let failed = false;
try {
  log(`chaos: seed ${seed}, ${nodes} nodes, ${clients} clients, ${keys} keys, ${durationS} s; dir ${dir}`);
  const r = await runChaos({ seed, dir: join(dir, "run"), durationMs: durationS * 1000, nodes, clients, keys, extraArgs, heartbeatMs, electionMs, mix, log, ...(weights ? { weights } : {}), env });
  const unknownByKind = new Map<string, number>();
  for (const h of r.history) if (h.outcome === "unknown") unknownByKind.set(h.kind, (unknownByKind.get(h.kind) ?? 0) + 1);
  const outages = r.faults.map((f) => f.end - f.start);
  console.log("");
  console.log(`== chaos summary (seed ${seed})`);
  console.log(`operations: ${formatStats(r.stats)}`);
  console.log(`recorded:   ${r.history.length} (${r.history.filter((h) => h.outcome === "ok").length} ok, unknown outcomes: ${[...unknownByKind].map(([k, n]) => `${k} ${n}`).join(", ") || "none"})`);
  console.log(`faults:     ${r.faults.length}: ${formatFaults(r.faults)}; each lasted ${medianMax(outages).median.toFixed(0)} ms median, ${medianMax(outages).max.toFixed(0)} ms max`);
  const rec = [...recoveryTimes(r.history, r.faults)].map(([k, xs]) => `${k} ${medianMax(xs).median.toFixed(0)}/${medianMax(xs).max.toFixed(0)} ms (${xs.length})`);
  console.log(`recovery:   fault on the leader to the first write acknowledged after it, median/max by kind: ${rec.join(", ") || "none"}`);
  console.log(`checker:    ${r.check.result} in ${r.checkMs.toFixed(0)} ms, ${r.check.steps} steps`);
  console.log(`crashes:    ${r.crashes.length === 0 ? "none (no node exited on its own)" : r.crashes.map((c) => `node ${c.id} exited (${c.code ?? c.signal})`).join(", ")}`);
  for (const c of r.crashes) console.log(`--- node ${c.id}:\n${c.log}`);
  if (r.crashes.length > 0) failed = true;
  if (r.check.result !== "ok") {
    failed = true;
    console.log(r.check.result === "illegal" ? r.check.message : r.check.message);
    console.log(historyExcerpt(r.history, r.check));
  }
  if (kills > 0) {
    log(`failover: ${kills} each of kill -9, SIGSTOP and cutting off the leader, a client writing to another node`);
    const cluster = await ProcCluster.start({ dir: join(dir, "failover"), nodes });
    try {
      const lines: string[] = [];
      for (const fault of ["kill", "pause", "isolate"] as const) {
        const times = await measureFailover(cluster, kills, log, fault);
        const { median, max } = medianMax(times);
        const what = fault === "kill" ? "kill -9 of" : fault === "pause" ? "SIGSTOP of" : "cutting off";
        lines.push(`failover:   ${what} the leader to the first acknowledged write, over ${times.length}: median ${median.toFixed(0)} ms, max ${max.toFixed(0)} ms (${times.map((t) => t.toFixed(0)).join(", ")})`);
      }
      console.log(lines.join("\n"));
    } finally {
      await cluster.stop();
    }
  }
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  if (keep || failed) console.log(`data and logs kept in ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
