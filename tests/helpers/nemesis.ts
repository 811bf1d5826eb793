// The nemesis of the fault tests: one fault at a time on a ProcCluster, chosen by a seeded source, the
// leader most often: kill -9 then restart with the same argv and data (kill), SIGSTOP then SIGCONT
// (pause), every link of one node cut (isolate), the link between the leader and one follower cut
// while both still reach the others (bridge), the cluster split in two with the target on the minority
// side (split; with 3 nodes the same as isolate), the links out of one node cut or the links into it
// (oneway: it hears and cannot speak, or the reverse), every link of one node slowed (slow), or a majority
// killed at once, the target among them, and restarted (crash; every acknowledged write must come back
// from the disks of the restarted nodes), or leadership handed by the leader to a follower
// (transfer: RAFT.TRANSFER, writes in flight on it must still be answered truly). Each fault lasts
// a random while, then is healed, then a quiet while; the whole run is bounded by a count and a time.
import type { ProcCluster } from "./proc-cluster.ts";

export type FaultKind = "kill" | "pause" | "isolate" | "bridge" | "split" | "oneway" | "slow" | "crash" | "transfer";

export interface FaultRecord {
  readonly kind: FaultKind;
  /** The node faulted (for bridge: the leader; the other end is in `peer`; for transfer: the leader, the new one in `peer`). */
  readonly target: number;
  readonly peer?: number;
  /** oneway: "out" (the target's own connections cut) or "in" (the others' connections to it cut). */
  readonly direction?: "in" | "out";
  /** crash: every node killed (the target first). */
  readonly killed?: readonly number[];
  /** Whether the target was the leader when the fault began (as far as INFO said). */
  readonly wasLeader: boolean;
  /** performance.now() when the fault began and when it was healed. */
  readonly start: number;
  end: number;
}

export interface NemesisOptions {
  readonly cluster: ProcCluster;
  readonly rand: () => number;
  readonly maxFaults: number;
  /** No new fault starts after this long (ms); the one in progress is healed. */
  readonly durationMs: number;
  /** How long a fault lasts: uniform in [min, max) ms. */
  readonly faultMs?: readonly [number, number];
  /** Calm between faults: uniform in [min, max) ms. */
  readonly quietMs?: readonly [number, number];
  /** Weights of the kinds. Default kill 3, pause 2, isolate 2, bridge 1, split 1, oneway 1, slow 1, crash 1, transfer 1. */
  readonly weights?: Partial<Record<FaultKind, number>>;
  /** Chance that a fault aims at the leader rather than a random follower. Default 0.7. */
  readonly leaderBias?: number;
  readonly stop?: { stopped: boolean };
  readonly log?: (line: string) => void;
}

const DEFAULT_WEIGHTS: Record<FaultKind, number> = { kill: 3, pause: 2, isolate: 2, bridge: 1, split: 1, oneway: 1, slow: 1, crash: 1, transfer: 1 };

/** The node that says it is the leader (the highest term wins if two do), or 0. */
export async function currentLeader(cluster: ProcCluster): Promise<number> {
  const infos = await Promise.all(cluster.nodes.map((n) => cluster.info(n.id, 300)));
  let best = 0;
  let bestTerm = -1;
  for (const i of infos) {
    if (i?.raft_role !== "leader") continue;
    const term = Number(i.raft_term);
    if (term > bestTerm) {
      best = Number(i.raft_node_id);
      bestTerm = term;
    }
  }
  return best;
}

export async function runNemesis(opts: NemesisOptions): Promise<FaultRecord[]> {
  const { cluster, rand } = opts;
  const weights = { ...DEFAULT_WEIGHTS, ...opts.weights };
  const [fMin, fMax] = opts.faultMs ?? [500, 2500];
  const [qMin, qMax] = opts.quietMs ?? [500, 1500];
  const bias = opts.leaderBias ?? 0.7;
  const log = opts.log ?? (() => {});
  const t0 = performance.now();
  const records: FaultRecord[] = [];
  const ids = cluster.nodes.map((n) => n.id);
  const live = (): boolean => !opts.stop?.stopped && records.length < opts.maxFaults && performance.now() - t0 < opts.durationMs;
  const between = (lo: number, hi: number): number => lo + rand() * (hi - lo);
  const choose = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const pickKind = (): FaultKind => {
    const entries = Object.entries(weights) as [FaultKind, number][];
    let r = rand() * entries.reduce((s, [, w]) => s + w, 0);
    for (const [k, w] of entries) if ((r -= w) < 0) return k;
    return "kill";
  };
  /** Sleeps up to ms, waking early when stopped. */
  const hold = async (ms: number): Promise<void> => {
    const end = performance.now() + ms;
    while (performance.now() < end && !opts.stop?.stopped) await Bun.sleep(Math.min(50, end - performance.now()));
  };

  while (live()) {
    await hold(between(qMin, qMax));
    if (!live()) break;
    const leader = await currentLeader(cluster);
    const kind = pickKind();
    const followers = ids.filter((id) => id !== leader);
    const target = leader !== 0 && rand() < bias ? leader : choose(leader !== 0 ? followers : ids);
    const wasLeader = target === leader;
    const lasting = between(fMin, fMax);
    const start = performance.now();
    let peer: number | undefined;
    let killed: number[] | undefined;
    let direction: "in" | "out" | undefined;
    switch (kind) {
      case "kill":
        await cluster.kill(target);
        break;
      case "pause":
        cluster.pause(target);
        break;
      case "isolate":
        cluster.isolate(target);
        break;
      case "bridge": {
        peer = choose(ids.filter((id) => id !== target));
        cluster.setLink(target, peer, { kind: "drop" });
        break;
      }
      case "split": {
        // The target and a random minority of the others (fewer than half in all) against the rest.
        const others = ids.filter((id) => id !== target).sort(() => rand() - 0.5);
        const minority = [target, ...others.slice(0, Math.floor((ids.length - 1) / 2) - 1)];
        cluster.partition([minority, ids.filter((id) => !minority.includes(id))]);
        break;
      }
      case "oneway": {
        direction = rand() < 0.5 ? "in" : "out";
        for (const id of ids) {
          if (id === target) continue;
          if (direction === "out") cluster.setDirected(target, id, { kind: "drop" });
          else cluster.setDirected(id, target, { kind: "drop" });
        }
        break;
      }
      case "crash": {
        const others = ids.filter((id) => id !== target).sort(() => rand() - 0.5);
        killed = [target, ...others.slice(0, Math.floor(ids.length / 2))];
        await Promise.all(killed.map((id) => cluster.kill(id)));
        break;
      }
      case "slow": {
        const ms = Math.round(between(20, 200));
        for (const id of ids) if (id !== target) cluster.setLink(target, id, { kind: "delay", ms });
        break;
      }
      case "transfer": {
        // Asked of whichever node the target is; it reaches the leader (forwarded if need be).
        peer = choose(ids.filter((id) => id !== leader && id !== 0));
        await cluster.command(target, ["RAFT.TRANSFER", String(peer)]);
        break;
      }
    }
    const rec: FaultRecord = { kind, target, ...(peer === undefined ? {} : { peer }), ...(killed ? { killed } : {}), ...(direction ? { direction } : {}), wasLeader, start, end: start };
    records.push(rec);
    log(`fault ${records.length}: ${kind} node ${target}${peer ? (kind === "transfer" ? ` (to node ${peer})` : ` (link to ${peer})`) : ""}${killed ? ` (nodes ${killed.join(",")} killed)` : ""}${direction ? ` (${direction}bound links cut)` : ""}${wasLeader ? " (leader)" : ""} for ${Math.round(lasting)} ms`);
    await hold(lasting);
    switch (kind) {
      case "kill":
        await cluster.restart(target);
        break;
      case "crash":
        await Promise.all((killed ?? []).map((id) => cluster.restart(id)));
        break;
      case "pause":
        cluster.resume(target);
        break;
      default:
        cluster.heal();
    }
    rec.end = performance.now();
  }
  return records;
}

/** Counts of faults by kind, e.g. "kill x3 (2 leader), pause x1 (1 leader)". */
export function formatFaults(records: readonly FaultRecord[]): string {
  const by = new Map<FaultKind, { n: number; leader: number }>();
  for (const r of records) {
    const e = by.get(r.kind) ?? { n: 0, leader: 0 };
    e.n++;
    if (r.wasLeader) e.leader++;
    by.set(r.kind, e);
  }
  return [...by].map(([k, e]) => `${k} x${e.n} (${e.leader} of the leader)`).join(", ") || "none";
}
