// Raft storage write costs on this disk, interleaved, median of several rounds (small and bounded):
//   ready1:  persist of one Ready (hard state + one 100-byte entry), one at a time
//   ready16: the same with 16 Readies in flight (group commit: they share fdatasyncs)
//   hsonly:  persist of a hard state alone (a vote), one at a time
//   file:    HardStateStore.save, the rename-and-fsync file this replaces (temp, fsync, rename, fsync dir)
//
//   bun scripts/bench-raftlog.ts [--ops 200] [--rounds 5] [--dir /path/on/the/disk]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setLogLevel } from "../src/log.ts";
import type { Entry } from "../src/raft/types.ts";
import { HardStateStore } from "../src/storage/hard-state.ts";
import { RaftLog } from "../src/storage/raft-log.ts";

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i !== -1 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}
const OPS = Math.min(Number(flag("ops", "200")), 5000);
const ROUNDS = Math.min(Number(flag("rounds", "5")), 20);
const base = flag("dir", tmpdir());
setLogLevel("error");

type Kind = "ready1" | "ready16" | "hsonly" | "file";

async function round(kind: Kind): Promise<number> {
  const dir = mkdtempSync(join(base, "kv-bench-raftlog-"));
  try {
    if (kind === "file") {
      const store = new HardStateStore(dir);
      const t0 = performance.now();
      for (let i = 1; i <= OPS; i++) store.save({ term: i, vote: 1, commit: i });
      return (performance.now() - t0) / OPS;
    }
    const log = await RaftLog.open({ dataDir: dir });
    const data = new Uint8Array(100).fill(7);
    const entry = (index: number): Entry => ({ index, term: 1, type: "normal", data });
    const t0 = performance.now();
    if (kind === "hsonly") {
      for (let i = 1; i <= OPS; i++) await log.persist({ hardState: { term: i, vote: 1, commit: 0 }, entries: [], snapshot: undefined });
    } else {
      const depth = kind === "ready16" ? 16 : 1;
      const inflight: Promise<void>[] = [];
      for (let i = 1; i <= OPS; i++) {
        inflight.push(log.persist({ hardState: { term: 1, vote: 1, commit: i - 1 }, entries: [entry(i)], snapshot: undefined }));
        if (inflight.length >= depth) await inflight.shift();
      }
      await Promise.all(inflight);
    }
    const perOp = (performance.now() - t0) / OPS;
    const fsyncs = log.log.stats.fsyncs;
    await log.close();
    if (kind === "ready16") console.log(`  ready16: ${fsyncs} fdatasyncs for ${OPS} Readies`);
    return perOp;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const kinds: Kind[] = ["ready1", "ready16", "hsonly", "file"];
const results = new Map<Kind, number[]>(kinds.map((k) => [k, []]));
for (let r = 0; r < ROUNDS; r++) for (const k of kinds) results.get(k)!.push(await round(k));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`${OPS} ops per round, ${ROUNDS} rounds interleaved, in ${base}; ms per operation, median (min-max):`);
for (const k of kinds) {
  const xs = results.get(k)!;
  console.log(`  ${k.padEnd(8)} ${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(3)}-${Math.max(...xs).toFixed(3)})`);
}
