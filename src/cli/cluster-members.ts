// `kv cluster add|remove|transfer`: membership changes of the local cluster in DIR/cluster.json,
// carried out with the RAFT.* commands (src/server/raft-commands.ts) sent to any running node.
// `add` starts a new `kv serve --join` of this same program with the next id and port, adds it as
// a learner, waits until it has caught up and promotes it; `remove` removes a member and stops its
// process; `transfer` hands leadership to a named voter.
import { type ArgsDef } from "citty";
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseInteger } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { ConnectionError, createClient, ServerError, type RespValue } from "../client/index.ts";
import { cliTls } from "./cli-tls.ts";
import { ensureClusterCerts, TLS_DIR } from "./certs.ts";
import { cliAuth, redactArgv } from "./cli-auth.ts";
import {
  type ClusterFile,
  type ClusterNode,
  DEFAULT_CLUSTER_DIR,
  LOOPBACK,
  nodeArgv,
  PEER_PORT_OFFSET,
  portOf,
  readClusterFile,
  selfArgv,
  writeClusterFile,
} from "./cluster-layout.ts";
import { isAlive, nodePids, portProblem, STOP_TIMEOUT_S_DEFAULT, stopAll } from "./cluster-proc.ts";
import { StartupError } from "./fatal.ts";
import { refuseBadArgs } from "./strict.ts";

/** Seconds `add` waits for the new node to catch up (and `transfer` for the new leader), by default. */
export const ADD_TIMEOUT_S_DEFAULT = 60;
const CALL_TIMEOUT_MS = 10_000;
const CATCH_UP_POLL_MS = 200;

export const addArgs = {
  "data-dir": { type: "string", description: "The cluster's directory (as given to kv cluster up)", default: DEFAULT_CLUSTER_DIR },
  timeout: { type: "string", description: `Seconds to wait for the new node to catch up (default ${ADD_TIMEOUT_S_DEFAULT})` },
} as const satisfies ArgsDef;

export const memberArgs = {
  id: { type: "positional", required: true, description: "The member's node id", valueHint: "ID" },
  "data-dir": { type: "string", description: "The cluster's directory (as given to kv cluster up)", default: DEFAULT_CLUSTER_DIR },
} as const satisfies ArgsDef;

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** A member as RAFT.MEMBERS lists it. */
export interface Member {
  id: number;
  addr: string;
  peer: string;
  voter: boolean;
  match: number;
  leader: boolean;
}

export function parseMembers(reply: RespValue): Member[] {
  if (!Array.isArray(reply)) throw new Error(`RAFT.MEMBERS answered ${JSON.stringify(reply)}`);
  return reply.map((m) => {
    const f = m as RespValue[];
    if (!Array.isArray(f) || f.length !== 6) throw new Error(`RAFT.MEMBERS answered a member as ${JSON.stringify(m)}`);
    return { id: Number(f[0]), addr: String(f[1]), peer: String(f[2]), voter: f[3] === "voter", match: Number(f[4]), leader: Number(f[5]) === 1 };
  });
}

/**
 * Sends `argv` to the first of `addrs` that is a member and answers (any member forwards a
 * membership command to the leader). A node that refuses the connection, or answers REMOVED (it
 * was removed and still runs), is skipped; an error reply from a member is thrown as ServerError.
 */
export async function call(addrs: readonly string[], argv: readonly string[], timeoutMs = CALL_TIMEOUT_MS): Promise<RespValue> {
  const skipped: string[] = [];
  for (const addr of addrs) {
    const client = createClient({ ...cliTls(), addrs: addr, timeoutMs, connectTimeoutMs: 1000, failFast: true, readRetriesMax: 0, ...cliAuth() });
    try {
      return await client.command([...argv]);
    } catch (e) {
      if (e instanceof ConnectionError) skipped.push(`${addr}: ${e.message}`);
      else if (e instanceof ServerError && e.prefix === "REMOVED") skipped.push(`${addr}: ${e.message}`);
      else throw e;
    } finally {
      client.destroy();
    }
  }
  throw new StartupError(`no member of the cluster answered ${argv[0]}${skipped.length > 0 ? ` (${skipped.join("; ")})` : ""}`, { hint: "start the cluster first (kv cluster up)" });
}

function load(dataDir: string): { dir: string; file: ClusterFile } {
  const dir = resolve(dataDir);
  const file = readClusterFile(dir);
  if (file === undefined) throw new ConfigError(`no cluster in ${dir} (kv cluster up N makes one)`);
  return { dir, file };
}

/** Client addresses of the nodes whose process runs, `except` left out. */
export function liveAddrs(file: ClusterFile, except = 0): string[] {
  return file.nodes.filter((n) => n.id !== except && nodePids(n.dataDir, n.pid).length > 0).map((n) => n.addr);
}

// ---- add ----

/** The cluster's error reply as the command's failure (not an internal error). */
async function answered<T>(what: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof ServerError) throw new StartupError(`${what}: ${e.message}`, {});
    throw e;
  }
}

export function add(rawArgs: readonly string[], args: { "data-dir"?: string; timeout?: string }): Promise<void> {
  return answered("kv cluster add", () => addNode(rawArgs, args));
}

export function remove(rawArgs: readonly string[], args: { id: string; "data-dir"?: string }): Promise<void> {
  return answered(`kv cluster remove ${args.id}`, () => removeNode(rawArgs, args));
}

export function transfer(rawArgs: readonly string[], args: { id: string; "data-dir"?: string }): Promise<void> {
  return answered(`kv cluster transfer ${args.id}`, () => transferTo(rawArgs, args));
}

async function addNode(rawArgs: readonly string[], args: { "data-dir"?: string; timeout?: string }): Promise<void> {
  refuseBadArgs(rawArgs, addArgs);
  const timeoutMs = (args.timeout === undefined ? ADD_TIMEOUT_S_DEFAULT : parseInteger(args.timeout, "--timeout", 1, 3600)) * 1000;
  const { dir, file } = load(args["data-dir"] ?? DEFAULT_CLUSTER_DIR);
  const addrs = liveAddrs(file);
  const members = parseMembers(await call(addrs, ["RAFT.MEMBERS"]));
  // The running cluster's id: a cluster restarted with --force-new-cluster has a new one.
  const info = String(await call(addrs, ["INFO", "raft"]));
  const liveId = /^raft_cluster_id:(.+?)\r?$/m.exec(info)?.[1];
  if (liveId !== undefined && liveId !== file.clusterId) {
    say(`the cluster's id is now ${liveId} (was ${file.clusterId} in cluster.json)`);
    file.clusterId = liveId;
  }
  const id = Math.max(...file.nodes.map((n) => n.id), ...members.map((m) => m.id), ...(file.removed ?? [0])) + 1;
  const port = file.basePort + id - 1;
  if (port + PEER_PORT_OFFSET > 65535) throw new ConfigError(`node ${id} would get port ${port}, whose peer port (+${PEER_PORT_OFFSET}) is past 65535`);
  const dataDir = join(dir, `n${id}`);
  const node: ClusterNode = { name: `n${id}`, id, addr: `${LOOPBACK}:${port}`, peer: `${LOOPBACK}:${port + PEER_PORT_OFFSET}`, pid: 0, start: [], cwd: dir, log: join(dataDir, "kv.log"), dataDir };
  for (const [kind, addr] of [["client", node.addr], ["peer", node.peer]] as const) {
    const problem = portProblem(portOf(addr));
    if (problem !== null) throw new StartupError(`cannot start ${node.name}: port ${portOf(addr)} (its ${kind} port) is ${problem}`, { hint: "stop whatever holds it" });
  }
  // --cluster: the members as the cluster knows them now, and the new node; --join: do not bootstrap.
  const known: ClusterNode[] = members.map((m) => ({ ...node, name: `n${m.id}`, id: m.id, addr: m.addr, peer: m.peer }));
  const tlsDir = file.tls === true ? join(dir, TLS_DIR) : undefined;
  if (tlsDir !== undefined) ensureClusterCerts(dir, [id], file.clusterId);
  node.start = [...nodeArgv(selfArgv(process.execPath, Bun.main, process.execArgv), node, [...known, node], file.clusterId, file.serveFlags, tlsDir), "--join"];
  mkdirSync(dataDir, { recursive: true });
  const fd = openSync(node.log, "a");
  let pid: number;
  try {
    writeSync(fd, `--- ${new Date().toISOString()} kv cluster add: ${redactArgv(node.start).join(" ")}\n`);
    const proc = Bun.spawn(node.start, { cwd: dir, stdin: "ignore", stdout: fd, stderr: fd, detached: true, env: process.env });
    proc.unref();
    pid = proc.pid;
  } finally {
    closeSync(fd);
  }
  node.pid = pid;
  file.nodes = [...file.nodes, node].sort((a, b) => a.id - b.id);
  writeClusterFile(dir, file);
  say(`started ${node.name} (pid ${pid}) on ${node.addr}, peers on ${portOf(node.peer)}; log ${node.log}`);

  try {
    await call(addrs, ["RAFT.ADD", String(id), node.addr, node.peer]);
  } catch (e) {
    // Not a member: the process and its entry go.
    await stopAll([{ name: node.name, pid }], STOP_TIMEOUT_S_DEFAULT * 1000, say);
    file.nodes = file.nodes.filter((n) => n.id !== id);
    writeClusterFile(dir, file);
    throw new StartupError(`could not add ${node.name} as a learner: ${(e as Error).message}`, { hint: `its data dir ${dataDir} can be deleted` });
  }
  say(`added node ${id} as a learner; waiting for it to catch up`);
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    if (!isAlive(pid)) throw new StartupError(`${node.name} (pid ${pid}) exited while catching up`, { file: node.log, hint: `see its log; it stays a learner: kv cluster remove ${id}` });
    try {
      await call(addrs, ["RAFT.PROMOTE", String(id)]);
      break;
    } catch (e) {
      if (!(e instanceof ServerError) || e.prefix !== "NOTREADY") throw e;
      last = e.message;
    }
    if (Date.now() >= deadline) {
      throw new StartupError(`node ${id} did not catch up within ${timeoutMs / 1000} s: ${last}`, { hint: `it stays a learner; promote it later (RAFT.PROMOTE ${id}) or remove it (kv cluster remove ${id})` });
    }
    await Bun.sleep(CATCH_UP_POLL_MS);
  }
  const now = parseMembers(await call(addrs, ["RAFT.MEMBERS"]));
  say(`node ${id} is a voter: ${now.filter((m) => m.voter).length} voters, ${now.filter((m) => !m.voter).length} learners`);
}

// ---- remove ----

async function removeNode(rawArgs: readonly string[], args: { id: string; "data-dir"?: string }): Promise<void> {
  refuseBadArgs(rawArgs, memberArgs);
  const id = parseInteger(args.id, "ID", 1, 2 ** 31 - 1);
  const { dir, file } = load(args["data-dir"] ?? DEFAULT_CLUSTER_DIR);
  const node = file.nodes.find((n) => n.id === id);
  // Asked of the others first: the node removed answers REMOVED once the change is applied.
  await call([...liveAddrs(file, id), ...(node !== undefined ? [node.addr] : [])], ["RAFT.REMOVE", String(id)]);
  say(`removed node ${id} from the cluster`);
  if (node !== undefined) {
    const targets = nodePids(node.dataDir, node.pid).map((pid) => ({ name: node.name, pid }));
    if (targets.length > 0) {
      const res = await stopAll(targets, STOP_TIMEOUT_S_DEFAULT * 1000, say);
      say(`stopped ${node.name}${res.stuck.length > 0 ? ` (pid ${res.stuck.map((t) => t.pid).join(", ")} still there)` : ""}; its data stays in ${node.dataDir} (it cannot rejoin with it; delete it)`);
    }
    file.nodes = file.nodes.filter((n) => n.id !== id);
  }
  file.removed = [...new Set([...(file.removed ?? []), id])].sort((a, b) => a - b);
  writeClusterFile(dir, file);
}

// ---- transfer ----

async function transferTo(rawArgs: readonly string[], args: { id: string; "data-dir"?: string }): Promise<void> {
  refuseBadArgs(rawArgs, memberArgs);
  const id = parseInteger(args.id, "ID", 1, 2 ** 31 - 1);
  const { file } = load(args["data-dir"] ?? DEFAULT_CLUSTER_DIR);
  await call(liveAddrs(file), ["RAFT.TRANSFER", String(id)]);
  say(`node ${id} leads`);
}
