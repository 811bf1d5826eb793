// The fault runs shared by tests/fault/cluster-linearizable.test.ts and scripts/chaos.ts:
// - runChaos: clients on every node while the nemesis kills, pauses and partitions; the history checked;
// - staleReadRound: the leader cut off from its peers while a client keeps reading it and another
//   writes through the new leader (with ReadIndex the old leader must not answer; without, it reads stale);
// - measureFailover: kill -9 of the leader, time until a client writing to a survivor is acknowledged.
import { type CheckResult, MAX_STEPS, checkHistory, formatOp } from "./linearizability.ts";
import { type RecordedOp, type WorkloadStats, OneNodeConn, interpret, keyOps, newStats, runWorkload } from "./chaos-workload.ts";
import { type FaultKind, type FaultRecord, runNemesis } from "./nemesis.ts";
import { ProcCluster } from "./proc-cluster.ts";
import { prng } from "./prng.ts";

export interface ChaosOptions {
  readonly seed: number;
  /** A directory for the nodes' data and logs (kept for a failed run's report; the caller removes it). */
  readonly dir: string;
  readonly durationMs: number;
  readonly nodes?: number;
  readonly clients?: number;
  readonly keys?: number;
  readonly maxOps?: number;
  readonly maxFaults?: number;
  readonly faultMs?: readonly [number, number];
  readonly quietMs?: readonly [number, number];
  /** GET / SET / DEL / SET NX weights (default: the workload's). */
  readonly mix?: { readonly get: number; readonly set: number; readonly del: number; readonly setnx: number };
  /** The nemesis's weights by kind (default: its own). */
  readonly weights?: Partial<Record<FaultKind, number>>;
  readonly env?: Record<string, string>;
  readonly extraArgs?: readonly string[];
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  readonly log?: (line: string) => void;
}

export interface ChaosResult {
  readonly history: RecordedOp[];
  readonly stats: WorkloadStats;
  readonly faults: FaultRecord[];
  readonly check: CheckResult;
  readonly checkMs: number;
  /** Nodes that exited on their own during the run (a crash), with the end of their logs. */
  readonly crashes: ProcCluster["unexpectedExits"];
  /** Leader changes seen by polling (a lower bound). */
  readonly elapsedMs: number;
}

/** Reads every key from every node once the faults are healed (retrying refusals), appended to the history. */
function finalReads(cluster: ProcCluster, keys: readonly string[], history: RecordedOp[], stats: WorkloadStats, clientBase: number): Promise<void> {
  return finalReadsAt(cluster.nodes.map((n) => ({ id: n.id, port: n.port })), keys, history, stats, clientBase);
}

/**
 * Reads every key once from each node (client port), retrying refusals for up to 10 s per key; each read
 * answered is appended to the history as client `clientBase + id`.
 */
export async function finalReadsAt(nodes: readonly { id: number; port: number }[], keys: readonly string[], history: RecordedOp[], stats: WorkloadStats, clientBase: number): Promise<void> {
  for (const node of nodes) {
    const conn = new OneNodeConn(node.port);
    for (const key of keys) {
      const deadline = performance.now() + 10_000;
      while (performance.now() < deadline) {
        if (!(await conn.ready(1000))) {
          await Bun.sleep(50);
          continue;
        }
        const call = performance.now();
        const reply = await conn.call(["GET", key], 2000);
        const ret = performance.now();
        if (reply.startsWith("!")) continue;
        const o = interpret("get", reply, stats);
        if (o.kind === "ok") {
          history.push({ client: clientBase + node.id, call, ret, key, kind: "get", outcome: "ok", result: o.result, port: node.port, reply: reply.trimEnd() });
          break;
        }
        await Bun.sleep(50);
      }
    }
    conn.drop();
  }
}

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const log = o.log ?? (() => {});
  const t0 = performance.now();
  const cluster = await ProcCluster.start({ dir: o.dir, nodes: o.nodes ?? 3, ...(o.env ? { env: o.env } : {}), ...(o.extraArgs ? { extraArgs: o.extraArgs } : {}), ...(o.heartbeatMs ? { heartbeatMs: o.heartbeatMs } : {}), ...(o.electionMs ? { electionMs: o.electionMs } : {}) });
  try {
    const leader = await cluster.waitLeader(15_000);
    log(`cluster up in ${Math.round(performance.now() - t0)} ms, leader ${leader}; data and logs in ${o.dir}`);
    const keys = Array.from({ length: o.keys ?? 4 }, (_, i) => `k${i}`);
    const faultMs = o.faultMs ?? [500, 2500];
    // The last fault is healed a few seconds before the clients stop: the run ends on a healthy cluster.
    const settleMs = Math.min(5000, o.durationMs / 4);
    const workload = runWorkload({
      ports: cluster.nodes.map((n) => n.port),
      clients: o.clients ?? 6,
      keys,
      rand: prng(o.seed),
      durationMs: o.durationMs,
      maxOps: o.maxOps ?? 1_000_000,
      opTimeoutMs: 1000,
      tag: `s${o.seed}.`,
      ...(o.mix ? { mix: o.mix } : {}),
    });
    const faults = await runNemesis({
      cluster,
      rand: prng((o.seed ^ 0x5bd1e995) >>> 0 || 1),
      maxFaults: o.maxFaults ?? 1_000_000,
      durationMs: Math.max(0, o.durationMs - settleMs - faultMs[1]),
      faultMs,
      ...(o.quietMs ? { quietMs: o.quietMs } : {}),
      ...(o.weights ? { weights: o.weights } : {}),
      log,
    });
    const after = await cluster.waitLeader(15_000);
    log(`faults over (${faults.length}); leader ${after}`);
    const { history, stats } = await workload;
    await finalReads(cluster, keys, history, stats, 1000);
    const c0 = performance.now();
    // Long runs get more search steps (the default suits a few thousand operations per key).
    const check = checkHistory(history, { maxSteps: Math.max(MAX_STEPS, 20 * history.length) });
    const checkMs = performance.now() - c0;
    return { history, stats, faults, check, checkMs, crashes: [...cluster.unexpectedExits], elapsedMs: performance.now() - t0 };
  } finally {
    await cluster.stop();
  }
}

export interface StaleRoundResult {
  readonly leader: number;
  readonly history: RecordedOp[];
  readonly check: CheckResult;
  /** Reads answered by the isolated old leader after a newer write was acknowledged elsewhere. */
  readonly readsAfterNewWrite: number;
  /** Of those, how many returned a value older than the newest acknowledged one (stale). */
  readonly staleReads: number;
  /** Acknowledged writes through the new leader. */
  readonly newWrites: number;
}

/**
 * On a running cluster: writes a value, cuts the leader off from its peers, keeps reading the key from
 * the old leader while writing new values through another node, for `windowMs` after the first new
 * write is acknowledged. Heals the links at the end. Records everything under the workload's rules.
 */
/**
 * The start of a round about the leader's reads: a reader on the leader (client 2), a writer on
 * another node (client 1), both recorded into one history, and a first value written and
 * acknowledged (bounded: 10 s).
 */
export async function leaderReadRound(cluster: ProcCluster, key: string) {
  const stats = newStats();
  const history: RecordedOp[] = [];
  const leader = await cluster.waitLeader(15_000);
  const other = cluster.nodes.find((n) => n.id !== leader)!;
  const reader = new OneNodeConn(cluster.node(leader).port);
  const writer = new OneNodeConn(other.port);
  const run = keyOps(key, history, stats);
  const deadline0 = performance.now() + 10_000;
  while (!(await run(writer, 1, "set", 2000))) {
    if (performance.now() > deadline0) throw new Error(`no first write acknowledged through node ${other.id}`);
    await Bun.sleep(50);
  }
  return { stats, history, leader, other, reader, writer, run, deadline0 };
}

export async function staleReadRound(cluster: ProcCluster, key: string, windowMs = 1500): Promise<StaleRoundResult> {
  // A first value, acknowledged, and seen by the leader's own client.
  const { stats, history, leader, other, reader, writer, run, deadline0 } = await leaderReadRound(cluster, key);
  while (!(await run(reader, 2, "get", 2000))) {
    if (performance.now() > deadline0) throw new Error(`the leader ${leader} answered no read`);
    await Bun.sleep(50);
  }

  cluster.isolate(leader);
  let firstNewAck = Infinity;
  let newWrites = 0;
  const stopAt = (): number => firstNewAck + windowMs;
  const hardEnd = performance.now() + 15_000;
  const readerLoop = (async () => {
    while (performance.now() < Math.min(stopAt(), hardEnd)) {
      await run(reader, 2, "get", 300);
      await Bun.sleep(5);
    }
  })();
  const writerLoop = (async () => {
    while (performance.now() < Math.min(stopAt(), hardEnd)) {
      const r = await run(writer, 1, "set", 1000);
      if (r) {
        newWrites++;
        if (firstNewAck === Infinity) firstNewAck = r.ret;
      }
      await Bun.sleep(r ? 100 : 20);
    }
  })();
  await Promise.all([readerLoop, writerLoop]);
  reader.drop();
  writer.drop();
  cluster.heal();

  // Stale: a read on the old leader, called after a newer write returned, that returned an older value.
  const acked = history.filter((h) => h.kind === "set" && h.outcome === "ok");
  const order = new Map(history.filter((h) => h.kind === "set").map((h) => [h.arg, Number((h.arg as string).split(".").pop())]));
  let readsAfterNewWrite = 0;
  let staleReads = 0;
  for (const r of history) {
    if (r.kind !== "get" || r.client !== 2 || r.call < firstNewAck) continue;
    readsAfterNewWrite++;
    const newest = Math.max(...acked.filter((w) => w.ret < r.call).map((w) => order.get(w.arg) as number));
    const got = r.result === null ? 0 : (order.get(r.result as string) ?? 0);
    if (got < newest) staleReads++;
  }
  return { leader, history, check: checkHistory(history), readsAfterNewWrite, staleReads, newWrites };
}

/**
 * Kills the leader (or pauses it, or cuts it off) `kills` times under a steady writer on another node;
 * returns each time in ms from the fault to the first acknowledged write called after it.
 */
export async function measureFailover(cluster: ProcCluster, kills: number, log: (line: string) => void = () => {}, fault: "kill" | "pause" | "isolate" = "kill"): Promise<number[]> {
  const times: number[] = [];
  for (let k = 1; k <= kills; k++) {
    const leader = await cluster.waitLeader(15_000);
    const survivor = cluster.nodes.find((n) => n.id !== leader && n.state === "up")!;
    const stats = newStats();
    let stop = false;
    let tKill = Infinity;
    let firstAck = Infinity;
    let acks = 0;
    // A few connections writing in turn, so one request stuck on the dead leader does not hide the others.
    const writers = Array.from({ length: 4 }, async (_, w) => {
      const conn = new OneNodeConn(survivor.port);
      let i = 0;
      while (!stop) {
        if (!(await conn.ready(500))) {
          await Bun.sleep(5);
          continue;
        }
        const call = performance.now();
        const reply = await conn.call(["SET", `failover${w}`, String(++i)], 250);
        const ret = performance.now();
        if (!reply.startsWith("!") && interpret("set", reply, stats).kind === "ok") {
          acks++;
          if (call >= tKill && ret < firstAck) firstAck = ret;
        } else await Bun.sleep(5);
      }
      conn.drop();
    });
    const warm = performance.now() + 5000;
    while (acks < 20 && performance.now() < warm) await Bun.sleep(10);
    tKill = performance.now();
    const exited = fault === "kill" ? cluster.killNow(leader) : Promise.resolve(0);
    if (fault === "pause") cluster.pause(leader);
    if (fault === "isolate") cluster.isolate(leader);
    const end = tKill + 15_000;
    while (firstAck === Infinity && performance.now() < end) await Bun.sleep(2);
    stop = true;
    await Promise.all(writers);
    await exited;
    const ms = firstAck - tKill;
    if (!Number.isFinite(ms)) throw new Error(`no write acknowledged within 15 s of the ${fault} of leader ${leader}`);
    times.push(ms);
    log(`${fault} ${k}: leader ${leader}, first acknowledged write on node ${survivor.id} after ${ms.toFixed(0)} ms`);
    if (fault === "kill") await cluster.restart(leader);
    else if (fault === "pause") cluster.resume(leader);
    else cluster.heal();
    await cluster.waitLeader(15_000);
  }
  return times;
}

/**
 * For each fault that hit the leader: the time from its start to the first write acknowledged to any
 * client that called it after the fault began (how long writes were unavailable), by kind.
 */
export function recoveryTimes(history: readonly RecordedOp[], faults: readonly FaultRecord[]): Map<string, number[]> {
  const writes = history.filter((h) => h.kind !== "get" && h.outcome === "ok").sort((a, b) => a.ret - b.ret);
  const out = new Map<string, number[]>();
  for (const f of faults) {
    if (!f.wasLeader) continue;
    const first = writes.find((w) => w.call >= f.start);
    if (!first) continue;
    const list = out.get(f.kind) ?? [];
    list.push(first.ret - f.start);
    out.set(f.kind, list);
  }
  return out;
}

/** Median and max of a list of numbers. */
export function medianMax(xs: readonly number[]): { median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length === 0 ? NaN : s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
  return { median, max: s.length ? (s[s.length - 1] as number) : NaN };
}

/** The part of a history around the operation the checker blocked on, for reports. */
export function historyExcerpt(history: readonly RecordedOp[], check: CheckResult, around = 12): string {
  if (check.result !== "illegal") return "";
  const key = check.explanation.key;
  const b = check.explanation.blocking;
  const ops = history.filter((h) => h.key === key).sort((x, y) => x.call - y.call);
  const i = ops.findIndex((h) => h.call === b.call && h.client === b.client);
  return ops
    .slice(Math.max(0, i - around), i + 3)
    .map((h) => `${h === ops[i] ? ">" : " "} ${formatOp(h)}  (port ${h.port}: ${JSON.stringify(h.reply)})`)
    .join("\n");
}
