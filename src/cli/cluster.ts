// `kv cluster up|status|down`: a local cluster of N `kv serve` processes of this same program on
// loopback (layout in cluster-layout.ts, processes in cluster-proc.ts, INFO raft in cluster-status.ts).
import { cliAuth, redactArgv, setClusterAuth } from "./cli-auth.ts";
import type { Subprocess } from "bun";
import { type ArgsDef, defineCommand } from "citty";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseInteger } from "../config.ts";
import { ConfigError } from "../errors.ts";
import {
  type ClusterFile,
  type ClusterNode,
  clusterFilePath,
  DEFAULT_BASE_PORT,
  DEFAULT_CLUSTER_DIR,
  layout,
  newClusterId,
  nodeArgv,
  PEER_PORT_OFFSET,
  parseUpArgs,
  portOf,
  readClusterFile,
  selfArgv,
  upArgs,
  writeClusterFile,
} from "./cluster-layout.ts";
import { isAlive, nodePids, portProblem, STOP_TIMEOUT_S_DEFAULT, type StopTarget, stopAll } from "./cluster-proc.ts";
import { type ClusterStatus, formatStatus, formatUpTable, gather, askNode, statusJson, stateOf, type Target } from "./cluster-status.ts";
import { StartupError } from "./fatal.ts";
import { add, addArgs, memberArgs, remove, transfer } from "./cluster-members.ts";
import { recover, recoverArgs } from "./cluster-recover.ts";
import { restart, restartArgs } from "./cluster-restart.ts";
import { refuseBadArgs } from "./strict.ts";
import { ensureClusterCerts, TLS_DIR } from "./certs.ts";
import { CLIENT_TLS_ARGS, useClusterTls, useTlsArgs } from "./cli-tls.ts";

/** Exit code of `status` when no node answers (as the client commands' "no answer"). */
const EXIT_NO_ANSWER = 3;
/** Exit code of `status` when the verdict is down (no leader, or no quorum) but some node answers. */
const EXIT_DOWN = 2;
/** Per-node INFO deadline while `up` waits, and in the live view (refreshed each second). */
const POLL_ASK_MS = 800;
const LIVE_REFRESH_MS = 1000;
/** The live view measures time lags up to this bound (it refreshes each second). */
const LIVE_LAG_BOUND_MS = 500;
const READY_POLL_MS = 100;
/** Lines of a failed node's log shown when `up` gives up. */
const LOG_TAIL_LINES = 15;
const STATUS_TIMEOUT_MS_DEFAULT = 1000;

function out(text: string): void {
  process.stdout.write(text);
}

/** An argv as a shell line (for the log and messages). */
export function shellLine(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}

/** `kv cluster <cmd>` with --data-dir when it is not the default (for hints). */
function hintCmd(cmd: string, dataDir: string): string {
  return dataDir === DEFAULT_CLUSTER_DIR ? `kv cluster ${cmd}` : `kv cluster ${cmd} --data-dir ${shellLine([dataDir])}`;
}

function logTail(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return "";
  }
  const lines = text.trimEnd().split("\n").slice(-LOG_TAIL_LINES);
  return lines.map((l) => `  | ${l}`).join("\n");
}

/** The node processes to stop: every live kv on each node's data dir (found from its LOCK), plus `extra` pids. */
function liveTargets(nodes: readonly { name: string; dataDir: string; pid: number }[], extra: ReadonlyMap<string, number> = new Map()): StopTarget[] {
  const targets: StopTarget[] = [];
  for (const n of nodes) {
    const pids = new Set(nodePids(n.dataDir, n.pid));
    const e = extra.get(n.name);
    if (e !== undefined && isAlive(e)) pids.add(e);
    for (const pid of pids) targets.push({ name: n.name, pid });
  }
  return targets;
}

function targetsOf(nodes: readonly ClusterNode[], pidOf: (n: ClusterNode) => number | null): Target[] {
  return nodes.map((n) => {
    const pid = pidOf(n);
    return { id: n.id, name: n.name, addr: n.addr, dataDir: n.dataDir, pid, running: pid !== null };
  });
}

// ---- up ----

async function up(rawArgs: readonly string[]): Promise<void> {
  const serveDef = (await import("./serve.ts")).default.args as ArgsDef;
  const opts = parseUpArgs(rawArgs, serveDef);
  const dir = resolve(opts.dataDir);
  const existing = readClusterFile(dir);
  let nodes: ClusterNode[];
  let file: ClusterFile;
  if (existing !== undefined) {
    const n = existing.nodes.length;
    if (opts.count !== undefined && opts.count !== n) {
      throw new ConfigError(`${dir} holds a ${n}-node cluster: '${hintCmd("up", opts.dataDir)}' restarts it; a ${opts.count}-node cluster needs another --data-dir`);
    }
    if (opts.basePort !== undefined && opts.basePort !== existing.basePort) {
      throw new ConfigError(`the cluster in ${dir} has base port ${existing.basePort} (its members' addresses are in its data): leave out --base-port, or use another --data-dir`);
    }
    nodes = existing.nodes.map((x) => ({ ...x }));
    file = { ...existing, serveFlags: opts.serveFlags.length > 0 ? opts.serveFlags : existing.serveFlags, nodes };
  } else {
    if (opts.count === undefined) throw new ConfigError(`how many nodes? kv cluster up N (there is no cluster in ${dir} to restart)`);
    const basePort = opts.basePort ?? DEFAULT_BASE_PORT;
    if (basePort + opts.count - 1 + PEER_PORT_OFFSET > 65535) throw new ConfigError(`--base-port: ${basePort} leaves no room for ${opts.count} nodes and their peer ports (+${PEER_PORT_OFFSET})`);
    nodes = layout(dir, opts.count, basePort);
    file = { clusterId: newClusterId(), basePort, serveFlags: opts.serveFlags, nodes };
  }

  if (opts.tls === true) file.tls = true;
  const tlsDir = file.tls === true ? join(dir, TLS_DIR) : undefined;
  if (tlsDir !== undefined) {
    mkdirSync(dir, { recursive: true });
    ensureClusterCerts(dir, nodes.map((n) => n.id), file.clusterId);
    useClusterTls(tlsDir);
  }
  // Nodes already running on their data dirs are left alone; the others' ports must be free.
  const running = new Map<number, number>();
  for (const n of nodes) {
    const pid = nodePids(n.dataDir, n.pid > 0 ? n.pid : undefined)[0];
    if (pid !== undefined) running.set(n.id, pid);
  }
  const toStart = nodes.filter((n) => !running.has(n.id));
  for (const n of toStart) {
    for (const [kind, addr] of [["client", n.addr], ["peer", n.peer]] as const) {
      const problem = portProblem(portOf(addr));
      if (problem !== null) {
        throw new StartupError(`cannot start ${n.name}: port ${portOf(addr)} (its ${kind} port) is ${problem}`, {
          hint: existing !== undefined ? `stop whatever holds it (the ports of the cluster in ${dir} are fixed)` : "stop whatever holds it, or choose another --base-port",
        });
      }
    }
  }

  const self = selfArgv(process.execPath, Bun.main, process.execArgv);
  const children = new Map<number, Subprocess>();
  for (const n of nodes) {
    const pid = running.get(n.id);
    if (pid !== undefined) {
      // Left alone; its restart line stays the one it was started with (or, unknown, the one it would get).
      n.pid = pid;
      if (n.start.length === 0) n.start = nodeArgv(self, n, nodes, file.clusterId, file.serveFlags, tlsDir);
      continue;
    }
    mkdirSync(n.dataDir, { recursive: true });
    n.start = nodeArgv(self, n, nodes, file.clusterId, file.serveFlags, tlsDir);
    n.cwd = dir;
    const fd = openSync(n.log, "a");
    try {
      writeSync(fd, `--- ${new Date().toISOString()} kv cluster up: ${shellLine(redactArgv(n.start))}\n`);
      // Its own session (setsid): Ctrl-C at the launcher's terminal reaches the launcher alone,
      // which stops the nodes in order, and --detach leaves them running after it exits.
      const proc = Bun.spawn(n.start, { cwd: n.cwd, stdin: "ignore", stdout: fd, stderr: fd, detached: true, env: process.env });
      children.set(n.id, proc);
      n.pid = proc.pid;
    } finally {
      closeSync(fd);
    }
  }
  writeClusterFile(dir, file);

  const pidOf = (n: ClusterNode): number | null => {
    const child = children.get(n.id);
    if (child !== undefined && child.exitCode === null && child.signalCode === null) return child.pid;
    return nodePids(n.dataDir, n.pid)[0] ?? null;
  };
  // Interrupted while it waits: stop what this run started (in the foreground: every node).
  const extra = new Map([...children].map(([id, p]) => [`n${id}`, p.pid] as const));
  const signals = stopOnSignals(
    () => (opts.detach ? [...children].map(([id, p]) => ({ name: `n${id}`, pid: p.pid })).filter((t) => isAlive(t.pid)) : liveTargets(nodes, extra)),
    dir,
  );
  let status: ClusterStatus;
  try {
    status = await waitReady(nodes, children, pidOf, Date.now() + opts.timeoutMs, opts.timeoutMs, signals.stopping);
  } catch (e) {
    if (children.size > 0) {
      const started = [...children].map(([id, p]) => ({ name: `n${id}`, pid: p.pid }));
      process.stderr.write(`stopping the ${started.length} node(s) this run started\n`);
      await stopAll(started.filter((t) => isAlive(t.pid)), STOP_TIMEOUT_S_DEFAULT * 1000, (l) => process.stderr.write(`${l}\n`));
    }
    signals.dispose();
    throw e;
  }

  const notes = new Map(nodes.map((n) => [n.id, running.has(n.id) ? "already running" : "started"] as const));
  const leader = nodes.find((n) => n.id === status.leader)!;
  out(`kv cluster of ${nodes.length} node(s) in ${dir}: leader ${leader.name} at ${leader.addr} (term ${status.term ?? "?"})\n`);
  out(formatUpTable(status, notes));
  const redisCli = `redis-cli${portOf(leader.addr) === 6379 ? "" : ` -p ${portOf(leader.addr)}`}`;
  if (tlsDir === undefined) out(`\nAny node answers every command: ${redisCli}\n`);
  else {
    const f = (name: string) => shellLine([join(tlsDir, name)]);
    out(`\nAny node answers every command, over TLS only (client certificate required): ${redisCli} --tls --cacert ${f("ca.crt")} --cert ${f("client.crt")} --key ${f("client.key")}\n`);
    out(`The kv CLI: kv get KEY --addr ${leader.addr} --tls --cacert ${f("ca.crt")} --cert ${f("client.crt")} --key ${f("client.key")}; kv cluster status/add/... use ${tlsDir} by themselves\n`);
  }
  out(`Node logs: ${join(dir, "n<i>", "kv.log")}; restart argv of each node: ${clusterFilePath(dir)}\n`);
  if (opts.detach) {
    out(`Status: ${hintCmd("status", opts.dataDir)}    Stop: ${hintCmd("down", opts.dataDir)}\n`);
    signals.dispose();
    for (const p of children.values()) p.unref();
    return;
  }
  await liveView(nodes, pidOf, dir, signals.stopping);
}

function describeExit(p: Subprocess): string {
  return p.signalCode !== null ? `killed by ${p.signalCode}` : `exit code ${p.exitCode}`;
}

/** Polls until a node leads and every node answers; throws StartupError naming the node and its log. */
async function waitReady(
  nodes: readonly ClusterNode[],
  children: ReadonlyMap<number, Subprocess>,
  pidOf: (n: ClusterNode) => number | null,
  deadline: number,
  timeoutMs: number,
  stopping: () => boolean,
): Promise<ClusterStatus> {
  for (;;) {
    // Interrupted: the signal handler stops the nodes and exits.
    if (stopping()) return await new Promise<never>(() => {});
    for (const n of nodes) {
      const p = children.get(n.id);
      if (p === undefined || (p.exitCode === null && p.signalCode === null)) continue;
      const tail = logTail(n.log);
      throw new StartupError(`${n.name} (pid ${p.pid}) exited before the cluster was ready (${describeExit(p)})${tail === "" ? "" : `; the end of its log:\n${tail}`}`, {
        file: n.log,
        hint: `the whole log is ${n.log}; its command line is in ${clusterFilePath(n.cwd)}`,
      });
    }
    const status = await gather(targetsOf(nodes, pidOf), POLL_ASK_MS);
    if (stopping()) continue;
    if (status.leader !== null && status.nodes.every((s) => s.up)) return status;
    if (Date.now() >= deadline) {
      const silent = status.nodes.filter((s) => !s.up);
      const why =
        silent.length > 0
          ? silent.map((s) => `${s.name} at ${s.addr} does not answer (${s.error ?? "?"}; log: ${join(s.dataDir ?? "", "kv.log")})`).join("; ")
          : `every node answers but none is leader (roles: ${status.nodes.map((s) => `${s.name} ${s.role ?? "unknown: no INFO raft section"}`).join(", ")}; logs: ${nodes.map((n) => n.log).join(", ")})`;
      const first = silent.length > 0 ? nodes.find((n) => n.id === silent[0]!.id)! : nodes[0]!;
      throw new StartupError(`the cluster was not ready within ${Math.round(timeoutMs / 1000)} s: ${why}`, {
        file: first.log,
        hint: "read the node's log; --timeout S waits longer (a large data dir takes a while to load)",
      });
    }
    await Bun.sleep(READY_POLL_MS);
  }
}

/** Whether anything shown by the live view changed besides the indexes (for output that is not a terminal). */
function shapeOf(s: ClusterStatus): string {
  return JSON.stringify([s.health, s.leader, s.term, s.nodes.map((n) => [n.id, n.role, n.voter, stateOf(n), n.pid])]);
}

const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * On Ctrl-C (SIGINT), SIGTERM or SIGHUP: SIGTERM to the nodes `which()` names, wait for them
 * (SIGKILL after the timeout), exit 0; a second signal meanwhile SIGKILLs them and exits 1.
 */
function stopOnSignals(which: () => StopTarget[], dir: string): { stopping(): boolean; dispose(): void } {
  let stopping = false;
  const stop = async (sig: string) => {
    const targets = which();
    if (stopping) {
      out(`\n${sig} again: SIGKILL to every node\n`);
      for (const t of targets) {
        try {
          process.kill(t.pid, "SIGKILL");
        } catch {}
      }
      process.exit(1);
    }
    stopping = true;
    out(`\n${sig}: stopping ${targets.length} node(s) (SIGTERM, then SIGKILL after ${STOP_TIMEOUT_S_DEFAULT} s)\n`);
    const res = await stopAll(targets, STOP_TIMEOUT_S_DEFAULT * 1000, (l) => out(`${l}\n`));
    out(`stopped ${res.stopped.length + res.killed.length} node(s); the data stays in ${dir} (kv cluster up there restarts it)\n`);
    process.exit(res.stuck.length > 0 ? 1 : 0);
  };
  const handlers = STOP_SIGNALS.map((sig) => [sig, () => void stop(sig)] as const);
  for (const [sig, h] of handlers) process.on(sig, h);
  return {
    stopping: () => stopping,
    dispose: () => {
      for (const [sig, h] of handlers) process.off(sig, h);
    },
  };
}

/**
 * The foreground view: status each second until a signal (see stopOnSignals) stops every node.
 * cluster.json is read again at each refresh, so nodes added (or removed) meanwhile are shown.
 */
async function liveView(nodes: readonly ClusterNode[], pidOf: (n: ClusterNode) => number | null, dir: string, stopping: () => boolean): Promise<never> {
  const tty = process.stdout.isTTY === true;
  let lastShape = "";
  let lastLines = 0;
  let shown: readonly ClusterNode[] = nodes;
  while (!stopping()) {
    const started = Date.now();
    try {
      shown = readClusterFile(dir)?.nodes ?? shown;
    } catch {
      // Being rewritten or damaged: the last good list.
    }
    const status = await gather(targetsOf(shown, pidOf), POLL_ASK_MS, LIVE_LAG_BOUND_MS);
    if (stopping()) break;
    const time = new Date().toISOString().slice(11, 19);
    if (tty) {
      // Redrawn in place under what `up` printed (cursor up over the last view, clear to the end).
      const view = `\n${time}  ${formatStatus(status)}Ctrl-C stops every node.\n`;
      out(`${lastLines > 0 ? `\x1b[${lastLines}A\x1b[J` : ""}${view}`);
      lastLines = view.split("\n").length - 1;
    } else {
      const shape = shapeOf(status);
      if (shape !== lastShape) out(`\n${time}  ${formatStatus(status)}`);
      lastShape = shape;
    }
    await Bun.sleep(Math.max(0, LIVE_REFRESH_MS - (Date.now() - started)));
  }
  // The signal handler exits the process once the nodes are stopped.
  return await new Promise<never>(() => {});
}

// ---- status ----

const statusArgs = {
  "data-dir": { type: "string", description: `The cluster's directory (default ${DEFAULT_CLUSTER_DIR})`, valueHint: "dir" },
  addr: { type: "string", description: "Ask this node instead: the members come from its INFO raft", valueHint: "host:port" },
  json: { type: "boolean", description: "Print JSON (for scripts)" },
  timeout: { type: "string", description: `Milliseconds to wait for each node's answer (default ${STATUS_TIMEOUT_MS_DEFAULT})`, valueHint: "ms" },
  ...CLIENT_TLS_ARGS,
} as const satisfies ArgsDef;

async function status(rawArgs: readonly string[], args: { "data-dir"?: string; addr?: string; json?: boolean; timeout?: string; tls?: boolean; cacert?: string; cert?: string; key?: string }): Promise<void> {
  refuseBadArgs(rawArgs, statusArgs);
  useTlsArgs(args);
  if (args.addr !== undefined && args["data-dir"] !== undefined) throw new ConfigError("give --data-dir or --addr, not both");
  const timeoutMs = args.timeout === undefined ? STATUS_TIMEOUT_MS_DEFAULT : parseInteger(args.timeout, "--timeout", 1, 600_000);
  let targets: Target[];
  if (args.addr !== undefined) {
    const a = await askNode(args.addr, timeoutMs);
    if ("error" in a) throw new StartupError(`cannot reach ${args.addr}: ${a.error}`, { exitCode: EXIT_NO_ANSWER });
    if (a.info === null) throw new StartupError(`${args.addr} answers but has no INFO raft section: is it a kv cluster node?`);
    const members = a.info.members.length > 0 ? a.info.members : [{ id: a.info.nodeId ?? 0, addr: args.addr, peer: "" }];
    targets = members.map((m) => ({ id: m.id, name: null, addr: m.addr, dataDir: null, pid: null, running: null }));
  } else {
    const dataDir = args["data-dir"] ?? DEFAULT_CLUSTER_DIR;
    const dir = resolve(dataDir);
    const file = readClusterFile(dir);
    if (file === undefined) {
      throw new StartupError(`no cluster in ${dir} (no ${clusterFilePath(dir)})`, { hint: "kv cluster up N --data-dir DIR starts one; --addr host:port asks a running node" });
    }
    targets = targetsOf(file.nodes, (n) => nodePids(n.dataDir, n.pid)[0] ?? null);
  }
  const s = await gather(targets, timeoutMs);
  out(args.json === true ? statusJson(s) : formatStatus(s));
  if (!s.nodes.some((n) => n.up)) process.exitCode = EXIT_NO_ANSWER;
  else if (s.health === "down") process.exitCode = EXIT_DOWN;
}

// ---- down ----

const downArgs = {
  "data-dir": { type: "string", description: `The cluster's directory (default ${DEFAULT_CLUSTER_DIR})`, valueHint: "dir" },
  timeout: { type: "string", description: `Seconds to wait after SIGTERM before SIGKILL (default ${STOP_TIMEOUT_S_DEFAULT})`, valueHint: "s" },
} as const satisfies ArgsDef;

/** The nodes of the cluster in `dir`: cluster.json's, plus any n<i> data dir it does not list. */
export function clusterNodeDirs(dir: string, say: (line: string) => void): { name: string; dataDir: string; pid: number }[] {
  let file: ClusterFile | undefined;
  try {
    file = readClusterFile(dir);
  } catch (e) {
    say(`${(e as Error).message}; looking for n<i> data dirs alone`);
  }
  const nodes = (file?.nodes ?? []).map((n) => ({ name: n.name, dataDir: n.dataDir, pid: n.pid }));
  for (const name of readdirSync(dir).sort()) {
    if (!/^n\d+$/.test(name) || nodes.some((n) => n.name === name)) continue;
    nodes.push({ name, dataDir: join(dir, name), pid: 0 });
  }
  return nodes;
}

async function down(rawArgs: readonly string[], args: { "data-dir"?: string; timeout?: string }): Promise<void> {
  refuseBadArgs(rawArgs, downArgs);
  const timeoutS = args.timeout === undefined ? STOP_TIMEOUT_S_DEFAULT : parseInteger(args.timeout, "--timeout", 0, 3600);
  const dir = resolve(args["data-dir"] ?? DEFAULT_CLUSTER_DIR);
  if (!existsSync(dir)) {
    out(`no cluster in ${dir}: nothing to stop\n`);
    return;
  }
  const say = (l: string) => out(`${l}\n`);
  const nodes = clusterNodeDirs(dir, say);
  if (nodes.length === 0) {
    out(`no cluster in ${dir}: nothing to stop\n`);
    return;
  }
  const targets = liveTargets(nodes);
  if (targets.length === 0) {
    out(`no node of the cluster in ${dir} is running: nothing to stop\n`);
    return;
  }
  out(`stopping ${targets.map((t) => `${t.name} (pid ${t.pid})`).join(", ")}\n`);
  const res = await stopAll(targets, timeoutS * 1000, say);
  if (res.stuck.length > 0) {
    throw new StartupError(`could not stop ${res.stuck.map((t) => `${t.name} (pid ${t.pid})`).join(", ")}`, { hint: "look at the process (ps -o pid,stat,cmd -p PID)" });
  }
  out(`stopped ${res.stopped.length + res.killed.length} node(s)${res.killed.length > 0 ? ` (${res.killed.length} with SIGKILL)` : ""}; the data stays in ${dir}\n`);
}

// ---- the command ----

export default defineCommand({
  meta: { name: "cluster", description: "Run a local cluster: kv cluster up N | status | down | restart | add | remove ID | transfer ID | recover ID" },
  // The cluster's own clients authenticate as its nodes do: with the password `up` is given now,
  // else the one its nodes were started with (their flags in cluster.json).
  setup({ rawArgs }) {
    setClusterAuth(rawArgs);
    if (cliAuth().password !== undefined) return;
    const at = rawArgs.findIndex((a) => a === "--data-dir" || a.startsWith("--data-dir="));
    const dir = at < 0 ? DEFAULT_CLUSTER_DIR : rawArgs[at]!.includes("=") ? rawArgs[at]!.slice("--data-dir=".length) : (rawArgs[at + 1] ?? DEFAULT_CLUSTER_DIR);
    try {
      const file = readClusterFile(dir);
      if (file !== undefined) setClusterAuth(file.serveFlags);
    } catch {
      // a damaged file is reported by the subcommand itself
    }
  },
  subCommands: {
    up: defineCommand({
      meta: { name: "up", description: "Start N kv serve nodes on 127.0.0.1 (or restart the cluster in --data-dir); other flags go to every kv serve" },
      args: upArgs,
      run: ({ rawArgs }) => up(rawArgs),
    }),
    status: defineCommand({
      meta: { name: "status", description: "Each node's role, term, commit and applied index, lag behind the leader, and whether it answers" },
      args: statusArgs,
      run: ({ rawArgs, args }) => status(rawArgs, args),
    }),
    down: defineCommand({
      meta: { name: "down", description: "Stop every node running on the cluster's data dirs (SIGTERM, then SIGKILL after --timeout)" },
      args: downArgs,
      run: ({ rawArgs, args }) => down(rawArgs, args),
    }),
    add: defineCommand({
      meta: { name: "add", description: "Start a new node (next id and port), add it as a learner, wait until it has caught up, promote it to voter" },
      args: addArgs,
      run: ({ rawArgs, args }) => add(rawArgs, args),
    }),
    remove: defineCommand({
      meta: { name: "remove", description: "Remove member ID from the cluster (a leader steps down first) and stop its process" },
      args: memberArgs,
      run: ({ rawArgs, args }) => remove(rawArgs, args),
    }),
    restart: defineCommand({
      meta: { name: "restart", description: "Rolling restart: each node in turn (the leader last, leadership handed away first), SIGTERM, started again with its recorded argv, caught up before the next" },
      args: restartArgs,
      run: ({ rawArgs, args }) => restart(rawArgs, args),
    }),
    transfer: defineCommand({
      meta: { name: "transfer", description: "Hand leadership to voter ID; returns once it leads" },
      args: memberArgs,
      run: ({ rawArgs, args }) => transfer(rawArgs, args),
    }),
    recover: defineCommand({
      meta: { name: "recover", description: "A majority lost for good: with every node stopped, make survivor ID a one-member cluster keeping its data (--force-new-cluster) and drop the others from cluster.json" },
      args: recoverArgs,
      run: ({ rawArgs, args }) => recover(rawArgs, args),
    }),
  },
});
