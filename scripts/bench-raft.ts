// Benchmark: proposals committed per CPU-second by the pure Raft core in a fault-free simulated 3-node cluster.
import { RawNode } from "../src/raft/rawnode.ts";
import { Rand } from "../src/raft/rand.ts";
import { MemoryStorage, bootstrapStorage } from "../src/raft/storage.ts";
import type { Message } from "../src/raft/types.ts";

const args = process.argv.slice(2);
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const entries = opt("--entries", 2_000_000);
const batch = opt("--batch", 1000);
const payloadBytes = opt("--payload", 64);
const nodes = opt("--nodes", 3);

const ids = Array.from({ length: nodes }, (_, i) => i + 1);
const cluster = ids.map((id) => {
  const storage = new MemoryStorage();
  bootstrapStorage(storage, ids);
  return { id, storage, rn: new RawNode({ id, storage, rand: new Rand(id) }), applied: 0 };
});
const byId = new Map(cluster.map((n) => [n.id, n]));
let queue: Message[] = [];

/** Runs every node's Ready loop and delivers messages until the cluster is quiet. */
function pump(): void {
  for (;;) {
    for (const n of cluster) {
      while (n.rn.hasReady()) {
        const rd = n.rn.ready();
        if (rd.snapshot) n.storage.applySnapshot(rd.snapshot);
        n.storage.append(rd.entries);
        if (rd.hardState) n.storage.setHardState(rd.hardState);
        for (const m of rd.messages) queue.push(m);
        n.applied += rd.committedEntries.length;
        n.rn.advance(rd);
      }
    }
    if (queue.length === 0) return;
    const q = queue;
    queue = [];
    for (const m of q) byId.get(m.to)?.rn.step(m);
  }
}

const leader = cluster[0]!;
pump(); // the first Ready applies the bootstrap membership
leader.rn.campaign();
pump();
if (leader.rn.raft.role !== "leader") throw new Error("no leader");

const payload = new Uint8Array(payloadBytes).fill(120);
const datas = Array.from({ length: batch }, () => payload);
const startApplied = cluster.map((n) => n.applied);
const cpu0 = process.cpuUsage();
const t0 = performance.now();
let proposed = 0;
let compactAt = 0;
while (proposed < entries) {
  const r = leader.rn.proposeBatch(datas);
  if (!r.ok) throw new Error(`proposal refused: ${r.reason}`);
  proposed += batch;
  pump();
  // Keep memory bounded the way a runtime would: snapshot and compact every so often.
  if (proposed - compactAt >= 200_000) {
    compactAt = proposed;
    for (const n of cluster) n.storage.createSnapshot(n.rn.raft.log.applied, n.rn.raft.confState(), new Uint8Array(0));
  }
}
const cpu = process.cpuUsage(cpu0);
const cpuSecs = (cpu.user + cpu.system) / 1e6;
const wallSecs = (performance.now() - t0) / 1000;
const committed = leader.applied - (startApplied[0] ?? 0);
for (const n of cluster) {
  if (n.applied - (startApplied[n.id - 1] ?? 0) !== proposed) throw new Error(`node ${n.id} applied ${n.applied} of ${proposed}`);
}
console.log(
  `raft core, ${nodes} nodes, batch ${batch}, ${payloadBytes}-byte entries: ${committed} entries committed and applied on every node`,
);
console.log(`${Math.round(committed / cpuSecs).toLocaleString("en-US")} entries/s of CPU (${cpuSecs.toFixed(2)} s CPU, ${wallSecs.toFixed(2)} s wall)`);
