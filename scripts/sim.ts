// CLI for the deterministic Raft simulator: runs seeds, prints throughput, faults and violations.
import { FAULT_KINDS, WORKLOAD_KINDS, replayCommand, runSeed, type FaultKind, type WorkloadKind } from "../tests/sim/sim.ts";

function usage(): never {
  console.error("usage: bun scripts/sim.ts --seeds N [--seed-start S] [--nodes 3|5] | --seed S [--nodes 3|5] [--trace]");
  process.exit(2);
}

const args = process.argv.slice(2);
let seeds = 100;
let seedStart = 1;
let nodesList: (3 | 5)[] = [3, 5];
let single: number | undefined;
let trace = false;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const v = args[i + 1];
  const num = (): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 0) usage();
    i++;
    return n;
  };
  switch (a) {
    case "--seeds":
      seeds = num();
      break;
    case "--seed-start":
      seedStart = num();
      break;
    case "--seed":
      single = num();
      break;
    case "--nodes": {
      const n = num();
      if (n !== 3 && n !== 5) usage();
      nodesList = [n];
      break;
    }
    case "--trace":
      trace = true;
      break;
    default:
      usage();
  }
}
if (single !== undefined) {
  seedStart = single;
  seeds = 1;
}

const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
const workload = Object.fromEntries(WORKLOAD_KINDS.map((k) => [k, 0])) as Record<WorkloadKind, number>;
let runs = 0;
let failed = 0;
let acked = 0;
let reads = 0;
let messages = 0;
let maxToLeader = 0;
let maxToConverge = 0;
let sumToLeader = 0;
let configCommits = 0;
let configElections = 0;
let configCommitsUnchecked = 0;
let configElectionsUnchecked = 0;
const t0 = performance.now();
for (const nodes of nodesList) {
  for (let seed = seedStart; seed < seedStart + seeds; seed++) {
    const r = await runSeed({ seed, nodes, keepTrace: trace });
    runs++;
    acked += r.stats.acked;
    reads += r.stats.readsServed;
    messages += r.stats.messages;
    maxToLeader = Math.max(maxToLeader, r.stats.ticksToLeader);
    maxToConverge = Math.max(maxToConverge, r.stats.ticksToConverge);
    sumToLeader += Math.max(0, r.stats.ticksToLeader);
    configCommits += r.stats.configCommits;
    configCommitsUnchecked += r.stats.configCommitsUnchecked;
    configElections += r.stats.configElections;
    configElectionsUnchecked += r.stats.configElectionsUnchecked;
    for (const k of FAULT_KINDS) faults[k] += r.faults[k];
    for (const k of WORKLOAD_KINDS) workload[k] += r.workload[k];
    if (trace) for (const line of r.trace) console.log(line);
    if (r.violations.length > 0) {
      failed++;
      console.log(`seed ${seed} (${nodes} nodes): ${r.violations.length} violation(s)`);
      for (const v of r.violations.slice(0, 5)) console.log(`  [${v.rule}] at step ${v.at}: ${v.detail}`);
      console.log(`  replay: ${replayCommand(seed, nodes)} --trace`);
    }
  }
}
const secs = (performance.now() - t0) / 1000;
console.log(`seeds run: ${runs} (${nodesList.join(",")} nodes, seeds ${seedStart}..${seedStart + seeds - 1}) in ${secs.toFixed(1)}s: ${(runs / secs).toFixed(1)} seeds/s`);
console.log(`faults injected: ${FAULT_KINDS.map((k) => `${k}=${faults[k]}`).join(" ")}`);
console.log(`workload: ${WORKLOAD_KINDS.map((k) => `${k}=${workload[k]}`).join(" ")} acked-writes=${acked} reads-served=${reads}`);
console.log(
  `messages sent: ${messages}; after healing: leader within ${(sumToLeader / Math.max(1, runs)).toFixed(1)} ticks on average (max ${maxToLeader}), everyone caught up within max ${maxToConverge} ticks`,
);
console.log(
  `checked against the committed log's membership: ${configCommits} indexes committed by leaders (Config Quorum; ${configCommitsUnchecked} commit moves with the membership unknown), ${configElections} elections (Vote Quorum; ${configElectionsUnchecked} unknown)`,
);
console.log(`violations: ${failed === 0 ? "none" : `${failed} failing seed(s)`}`);
process.exit(failed === 0 ? 0 : 1);
