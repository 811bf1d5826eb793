// `kv cluster restart`: a rolling restart of the local cluster in DIR/cluster.json. One node at a
// time, followers and learners first (by id), the leader last: a node that leads when its turn
// comes first hands leadership (RAFT.TRANSFER) to the most caught-up other voter. Each node is
// stopped with SIGTERM (a graceful stop: the clients' commands already received are answered),
// started again with its recorded argv in its recorded directory (the same executable path: a
// rebuilt binary is what comes back, which makes this the upgrade path), and the next node is
// touched only once this one answers, follows the leader, and has applied the leader's commit
// index as of its restart.
import { redactArgv } from "./cli-auth.ts";
import { type ArgsDef } from "citty";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { resolve } from "node:path";
import { parseInteger } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { ServerError } from "../client/index.ts";
import { type ClusterFile, type ClusterNode, clusterFilePath, DEFAULT_CLUSTER_DIR, readClusterFile, writeClusterFile } from "./cluster-layout.ts";
import { call } from "./cluster-members.ts";
import { isAlive, nodePids, STOP_TIMEOUT_S_DEFAULT, stopAll } from "./cluster-proc.ts";
import { askNode, type ClusterStatus, gather, type RaftInfo, type Target } from "./cluster-status.ts";
import { StartupError } from "./fatal.ts";
import { refuseBadArgs } from "./strict.ts";

/** Seconds a restarted node has to answer and catch up (and a transfer to finish), by default. */
export const RESTART_TIMEOUT_S_DEFAULT = 60;
const ASK_MS = 1000;
const POLL_MS = 50;
const LOG_TAIL_LINES = 15;

export const restartArgs = {
  "data-dir": { type: "string", description: `The cluster's directory (default ${DEFAULT_CLUSTER_DIR})`, valueHint: "dir" },
  timeout: { type: "string", description: `Seconds each node has to come back and catch up (default ${RESTART_TIMEOUT_S_DEFAULT})`, valueHint: "s" },
  "stop-timeout": { type: "string", description: `Seconds to wait after SIGTERM before SIGKILL (default ${STOP_TIMEOUT_S_DEFAULT})`, valueHint: "s" },
} as const satisfies ArgsDef;

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

function targetsOf(nodes: readonly ClusterNode[]): Target[] {
  return nodes.map((n) => {
    const pid = nodePids(n.dataDir, n.pid)[0] ?? null;
    return { id: n.id, name: n.name, addr: n.addr, dataDir: n.dataDir, pid, running: pid !== null };
  });
}

function logTail(path: string): string {
  try {
    const lines = readFileSync(path, "utf8").trimEnd().split("\n").slice(-LOG_TAIL_LINES);
    return lines.map((l) => `  | ${l}`).join("\n");
  } catch {
    return "";
  }
}

/** The leader's INFO raft (null: no node says it leads, or it does not answer). */
async function leaderInfo(nodes: readonly ClusterNode[]): Promise<{ id: number; info: RaftInfo } | null> {
  const s = await gather(targetsOf(nodes), ASK_MS);
  if (s.leader === null) return null;
  const leader = nodes.find((n) => n.id === s.leader);
  if (leader === undefined) return null;
  const a = await askNode(leader.addr, ASK_MS);
  if (!("info" in a) || a.info === null || a.info.role !== "leader") return null;
  return { id: leader.id, info: a.info };
}

/** Refuses to start unless every node of cluster.json runs, answers, and a leader is known. */
function checkHealthy(s: ClusterStatus, dir: string): void {
  const bad = s.nodes.filter((n) => !n.up);
  if (bad.length > 0) {
    const what = bad.map((n) => `${n.name ?? n.id} (${n.running === true ? "running but not answering" : "not running"})`).join(", ");
    throw new StartupError(`not every node is up: ${what}; a rolling restart of a degraded cluster could lose its quorum`, {
      hint: `bring it back first (kv cluster up --data-dir ${dir} restarts the nodes that are not running), then retry`,
    });
  }
  if (s.leader === null) throw new StartupError("no node leads: the cluster has no quorum or is electing; retry once it has a leader", {});
}

/** Hands leadership away from `from` to the most caught-up other voter; returns the new leader's id. */
async function transferAway(nodes: readonly ClusterNode[], from: ClusterNode, info: RaftInfo, timeoutMs: number): Promise<number> {
  const s = await gather(targetsOf(nodes), ASK_MS);
  const candidates = s.nodes.filter((n) => n.id !== from.id && n.up && info.voters.includes(n.id) && n.applied !== null).sort((a, b) => b.applied! - a.applied! || a.id - b.id);
  const to = candidates[0];
  if (to === undefined) throw new StartupError(`${from.name} leads and no other voter answers: it cannot hand leadership away (a one-voter cluster cannot be restarted without a pause)`, {});
  try {
    await call([from.addr, to.addr], ["RAFT.TRANSFER", String(to.id)], timeoutMs);
  } catch (e) {
    if (e instanceof ServerError) throw new StartupError(`${from.name}: handing leadership to node ${to.id} failed: ${e.message}`, { hint: "the cluster is unchanged; retry kv cluster restart" });
    throw e;
  }
  return to.id;
}

/** Restarts one node and waits until it has caught up, printing its progress; throws StartupError when it does not come back. */
async function restartOne(dir: string, nodes: readonly ClusterNode[], n: ClusterNode, timeoutMs: number, stopTimeoutMs: number): Promise<void> {
  if (n.start.length === 0) throw new StartupError(`${n.name} has no recorded command line in ${clusterFilePath(dir)}`, { hint: "start the cluster with kv cluster up, which records it" });
  // Leading now (at the start, or since): leadership goes to another voter first.
  let lead = await leaderInfo(nodes);
  if (lead === null) throw new StartupError(`no leader before restarting ${n.name}: stopped here (the nodes restarted so far are up)`, { hint: "kv cluster status shows the cluster; retry once it has a leader" });
  if (lead.id === n.id) {
    const t0 = Date.now();
    const to = await transferAway(nodes, n, lead.info, timeoutMs);
    say(`${n.name}: leader; handed leadership to node ${to} in ${Date.now() - t0} ms`);
  }
  const pids = nodePids(n.dataDir, n.pid);
  if (pids.length === 0) throw new StartupError(`${n.name} is not running: stopped here`, { hint: `kv cluster up --data-dir ${dir} starts it` });
  const stopped = Date.now();
  say(`${n.name}: stopping pid ${pids.join(", ")} (SIGTERM)`);
  const res = await stopAll(
    pids.map((pid) => ({ name: n.name, pid })),
    stopTimeoutMs,
    (l) => say(`${n.name}: ${l}`),
  );
  if (res.stuck.length > 0) throw new StartupError(`${n.name}: pid ${res.stuck.map((t) => t.pid).join(", ")} could not be stopped`, { hint: "look at the process (ps -o pid,stat,cmd -p PID)" });
  say(`${n.name}: stopped in ${Date.now() - stopped} ms${res.killed.length > 0 ? " (needed SIGKILL)" : ""}; starting it again`);

  const fd = openSync(n.log, "a");
  let pid: number;
  try {
    writeSync(fd, `--- ${new Date().toISOString()} kv cluster restart: ${redactArgv(n.start).join(" ")}\n`);
    const proc = Bun.spawn(n.start, { cwd: n.cwd, stdin: "ignore", stdout: fd, stderr: fd, detached: true, env: process.env });
    proc.unref();
    pid = proc.pid;
  } finally {
    closeSync(fd);
  }
  // Recorded at once (re-read: a concurrent add or remove is kept).
  const file = readClusterFile(dir);
  const rec = file?.nodes.find((x) => x.id === n.id);
  if (file !== undefined && rec !== undefined) {
    rec.pid = pid;
    writeClusterFile(dir, file);
  }
  n.pid = pid;

  // Caught up: it answers, follows a leader, and has applied the leader's commit index as of its restart.
  const others = nodes.filter((x) => x.id !== n.id);
  lead = await leaderInfo(others);
  let target = lead?.info.commit ?? null;
  const deadline = Date.now() + timeoutMs;
  let last = "it does not answer yet";
  for (;;) {
    if (!isAlive(pid)) {
      const tail = logTail(n.log);
      throw new StartupError(`${n.name} (pid ${pid}) exited after its restart${tail === "" ? "" : `; the end of its log:\n${tail}`}`, { file: n.log, hint: `the whole log is ${n.log}` });
    }
    if (target === null) {
      lead = await leaderInfo(others);
      target = lead?.info.commit ?? null;
    }
    const a = await askNode(n.addr, ASK_MS);
    if ("info" in a && a.info !== null) {
      const r = a.info;
      if (target !== null && r.applied !== null && r.applied >= target && r.leaderId !== null && r.leaderId > 0) {
        say(`${n.name}: back (pid ${pid}) in ${Date.now() - stopped} ms: ${r.role}, applied ${r.applied} >= leader's commit ${target} at its restart`);
        return;
      }
      last = `applied ${r.applied ?? "?"}, leader's commit at its restart ${target ?? "unknown (no leader)"}, leader ${r.leaderId ?? "?"}`;
    } else if ("error" in a) {
      last = `it does not answer (${a.error})`;
    }
    if (Date.now() >= deadline) {
      throw new StartupError(`${n.name} did not come back within ${Math.round(timeoutMs / 1000)} s of its restart: ${last}; stopped here (the nodes after it were not restarted)`, {
        file: n.log,
        hint: `read its log ${n.log}; kv cluster status shows the cluster; --timeout S waits longer`,
      });
    }
    await Bun.sleep(POLL_MS);
  }
}

export async function restart(rawArgs: readonly string[], args: { "data-dir"?: string; timeout?: string; "stop-timeout"?: string }): Promise<void> {
  refuseBadArgs(rawArgs, restartArgs);
  const timeoutMs = (args.timeout === undefined ? RESTART_TIMEOUT_S_DEFAULT : parseInteger(args.timeout, "--timeout", 1, 3600)) * 1000;
  const stopTimeoutMs = (args["stop-timeout"] === undefined ? STOP_TIMEOUT_S_DEFAULT : parseInteger(args["stop-timeout"], "--stop-timeout", 0, 3600)) * 1000;
  const dataDir = args["data-dir"] ?? DEFAULT_CLUSTER_DIR;
  const dir = resolve(dataDir);
  const file: ClusterFile | undefined = readClusterFile(dir);
  if (file === undefined) throw new ConfigError(`no cluster in ${dir} (kv cluster up N makes one)`);
  const nodes = file.nodes;
  const s = await gather(targetsOf(nodes), ASK_MS);
  checkHealthy(s, dataDir);
  const order = [...nodes.filter((n) => n.id !== s.leader), ...nodes.filter((n) => n.id === s.leader)];
  say(`rolling restart of ${nodes.length} node(s) in ${dir}: ${order.map((n) => n.name).join(", ")} (leader ${s.leader} last)`);
  const started = Date.now();
  for (const n of order) {
    await restartOne(dir, nodes, n, timeoutMs, stopTimeoutMs);
  }
  const end = await gather(targetsOf(nodes), ASK_MS);
  say(`restarted ${nodes.length} node(s) in ${((Date.now() - started) / 1000).toFixed(1)} s; leader ${end.leader ?? "none"}${end.term === null ? "" : ` (term ${end.term})`}`);
}
