// Operating a cluster under load, with real processes driven by the compiled binary (`kv cluster up 3
// --detach`, then `kv cluster add | remove | transfer | restart`), each history checked twice:
// - for linearizability: raw clients on every node run GET / SET / DEL / SET NX on a few keys
//   (tests/helpers/chaos-workload.ts), every node's final reads are appended, and the whole history goes
//   to the checker (tests/helpers/linearizability.ts);
// - for lost acknowledged writes: a client of the project's library writes SET ack:<i> one key at a
//   time (an uncertain write is sent again), and every acknowledged key must be on every member at the end.
// The operations: a learner added during writes and promoted, then leadership handed to it and back;
// the leader removed during writes; a rolling restart. Each runs a few seconds of load, bounded by a
// count and a time. (Single leadership transfers at random moments are also a fault of the nemesis in
// tests/fault/cluster-linearizable.test.ts.)
import { describe, expect, test } from "bun:test";
import { readClusterFile } from "../../src/cli/cluster-layout.ts";
import { createClient } from "../../src/client/index.ts";
import { finalReadsAt, historyExcerpt } from "../helpers/chaos-run.ts";
import { formatStats, newStats, runWorkload, type RecordedOp, type WorkloadStats } from "../helpers/chaos-workload.ts";
import { type ClusterCliHarness, clusterCliHarness, setWriter, until, upDetached } from "../helpers/cluster-cli.ts";
import { MAX_STEPS, checkHistory } from "../helpers/linearizability.ts";
import { prng } from "../helpers/prng.ts";

const h: ClusterCliHarness = clusterCliHarness("kv-membership-lin-");
const SEED = Number(process.env.KV_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
const KEYS = ["k0", "k1", "k2", "k3"];

interface Phase {
  /** What ran, with its exit code and output, for the report. */
  readonly label: string;
  readonly code: number;
  readonly out: string;
  readonly start: number;
  readonly end: number;
}

/** One member's role by INFO raft, through the library client (null if it does not answer). */
async function raftInfo(addr: string): Promise<Record<string, string> | null> {
  const c = createClient({ addrs: addr, timeoutMs: 2000, readRetriesMax: 0 });
  try {
    const text = String(await c.command(["INFO", "raft"]));
    return Object.fromEntries(text.split("\r\n").filter((l) => l.includes(":") && !l.startsWith("#")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]));
  } catch {
    return null;
  } finally {
    c.destroy();
  }
}

/** The leader's id, once every member of cluster.json names the same one (bounded). */
async function agreedLeader(dir: string, ms = 15_000): Promise<number> {
  return until("an agreed leader", ms, async () => {
    const nodes = readClusterFile(dir)!.nodes;
    const infos = await Promise.all(nodes.map((n) => raftInfo(n.addr)));
    const ids = new Set(infos.map((i) => i?.raft_leader_id));
    const [only] = [...ids];
    return ids.size === 1 && only !== undefined && only !== "0" && infos.some((i) => i?.raft_role === "leader") ? Number(only) : undefined;
  });
}

/**
 * Starts a 3-node cluster, the workload and the SET writer, lets them warm up, runs `act` (which runs
 * kv commands and reports them as phases), lets the load run on for a while, stops it, reads every
 * key on every remaining member, and checks both properties. Returns what the assertions need.
 */
async function underLoad(ports: (base: number) => number[], act: (dir: string, base: number) => Promise<Phase[]>) {
  // Small snapshots: the log is compacted under the load, so a new node catches up from a snapshot.
  const { dir, base, addrs } = await upDetached(h, 3, ["--snapshot-log-bytes", "16kb"]);
  await agreedLeader(dir);
  const stop = { stopped: false };
  const stats: WorkloadStats = newStats();
  // Bounded by time and count; stopped earlier once the operation is over.
  const workload = runWorkload(
    { ports: ports(base), clients: 6, keys: KEYS, rand: prng(SEED), durationMs: 45_000, maxOps: 60_000, opTimeoutMs: 1000, stop, tag: `s${SEED}.` },
    stats,
  );
  const writer = setWriter(addrs, "ack", { retryUncertain: true, maxWrites: 50_000, maxMs: 45_000 });
  await until("first acknowledged writes", 10_000, async () => (writer.acked.length >= 50 && stats.ok >= 100 ? true : undefined));
  const phases = await act(dir, base);
  const okBefore = stats.ok;
  const ackedBefore = writer.acked.length;
  // Load after the operation: it must go on (bounded).
  await until("operations after the change", 10_000, async () => (stats.ok >= okBefore + 200 && writer.acked.length >= ackedBefore + 50 ? true : undefined)).catch(() => undefined);
  stop.stopped = true;
  await writer.stop();
  const { history } = await workload;
  const members = readClusterFile(dir)!.nodes;
  await finalReadsAt(members.map((n) => ({ id: n.id, port: Number(n.addr.split(":")[1]) })), KEYS, history, stats, 1000);
  const check = checkHistory(history, { maxSteps: Math.max(MAX_STEPS, 20 * history.length) });
  // Every acknowledged SET ack:<i> on every member (linearizable reads there).
  const missing: string[] = [];
  for (const n of members) {
    const c = createClient({ addrs: n.addr, timeoutMs: 10_000 });
    try {
      for (let at = 0; at < writer.acked.length; at += 500) {
        const batch = writer.acked.slice(at, at + 500);
        const got = await c.mget(batch.map((i) => `ack:${i}`));
        batch.forEach((i, j) => {
          if (got[j] !== String(i)) missing.push(`node ${n.id}: ack:${i} = ${JSON.stringify(got[j])}`);
        });
      }
    } finally {
      c.destroy();
    }
  }
  const report = `seed ${SEED}: ${formatStats(stats)}; ${writer.acked.length} SETs acknowledged to the library client, ${writer.errors.length} errors; checker: ${check.result} (${check.steps} steps)\n${phases.map((p) => `${p.label} (exit ${p.code}, ${Math.round(p.end - p.start)} ms): ${p.out.trim().split("\n").join(" | ")}`).join("\n")}`;
  console.log(report);
  if (check.result === "illegal") console.log(`${check.message}\n${historyExcerpt(history, check)}`);
  // Operations acknowledged while each phase ran (the load was not paused for it).
  const during = phases.map((p) => history.filter((o) => o.outcome === "ok" && o.kind !== "get" && o.call >= p.start && o.ret <= p.end).length);
  return { dir, base, phases, history, stats, check, writer, missing, during, members };
}

async function phase(label: string, ...args: string[]): Promise<Phase> {
  const start = performance.now();
  const r = await h.kv(...args);
  return { label, code: r.code, out: r.stdout + r.stderr, start, end: performance.now() };
}

function expectClean(r: Awaited<ReturnType<typeof underLoad>>): void {
  expect(r.phases.map((p) => [p.label, p.code])).toEqual(r.phases.map((p) => [p.label, 0]));
  expect(r.check.result).toBe("ok");
  expect(r.missing).toEqual([]);
  // The library client retries uncertain writes and follows the leader: it sees no error.
  expect(r.writer.errors).toEqual([]);
  expect(r.writer.acked.length).toBeGreaterThan(100);
  expect(r.stats.ok).toBeGreaterThan(300);
  // Reads that saw a written value, so the checker had something to refute.
  expect(r.history.some((o: RecordedOp) => o.kind === "get" && o.outcome === "ok" && o.result !== null)).toBe(true);
}

describe("membership changes under load (kv cluster ..., the history checked)", () => {
  test(`a learner added during writes and promoted, then leadership handed to it and back (seed ${SEED})`, async () => {
    // Clients on node 4's port too: they connect once it is up and read from it as a learner, then a voter.
    const r = await underLoad(
      (base) => [base, base + 1, base + 2, base + 3],
      async (dir) => {
        const add = await phase("kv cluster add", "cluster", "add", "--data-dir", dir, "--timeout", "30");
        const old = await agreedLeader(dir);
        const there = await phase("kv cluster transfer 4", "cluster", "transfer", "4", "--data-dir", dir);
        const back = await phase(`kv cluster transfer ${old}`, "cluster", "transfer", String(old === 4 ? 1 : old), "--data-dir", dir);
        return [add, there, back];
      },
    );
    expectClean(r);
    expect(r.phases[0]!.out).toContain("node 4 is a voter: 4 voters, 0 learners");
    expect(r.members.map((n) => n.id)).toEqual([1, 2, 3, 4]);
    // Writes were acknowledged while the new node caught up and while leadership moved.
    expect(r.during[0]).toBeGreaterThan(0);
    // Node 4 answered clients (as a learner or a voter) during the run.
    expect(r.history.some((o) => o.port === r.base + 3 && o.outcome === "ok" && Number(o.client) < 1000)).toBe(true);
  }, 120_000);

  test(`the leader removed during writes (seed ${SEED})`, async () => {
    let removed = 0;
    const r = await underLoad(
      (base) => [base, base + 1, base + 2],
      async (dir) => {
        removed = await agreedLeader(dir);
        const rm = await phase(`kv cluster remove ${removed} (the leader)`, "cluster", "remove", String(removed), "--data-dir", dir);
        const after = await agreedLeader(dir);
        expect(after).not.toBe(removed);
        return [rm];
      },
    );
    expectClean(r);
    expect(r.members.map((n) => n.id)).toEqual([1, 2, 3].filter((id) => id !== removed));
    // The rest elected a leader and writes went on after the removal.
    expect(r.history.some((o) => o.outcome === "ok" && o.kind !== "get" && o.call > r.phases[0]!.end)).toBe(true);
  }, 120_000);

  test(`a rolling restart (kv cluster restart) (seed ${SEED})`, async () => {
    const r = await underLoad(
      (base) => [base, base + 1, base + 2],
      async (dir) => [await phase("kv cluster restart", "cluster", "restart", "--data-dir", dir, "--timeout", "20")],
    );
    expectClean(r);
    expect(r.phases[0]!.out.match(/: back \(pid \d+\)/g)?.length).toBe(3);
    expect(r.during[0]).toBeGreaterThan(0);
  }, 120_000);
});
