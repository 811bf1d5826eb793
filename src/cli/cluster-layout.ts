// The local cluster of `kv cluster up N` on disk: node i has id i, client port base+i-1, peer port
// client+10000, data dir DIR/n<i> and log DIR/n<i>/kv.log; DIR/cluster.json records every node with
// the exact argv that restarts it on its data.
import type { ArgsDef } from "citty";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseInteger } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { StartupError } from "./fatal.ts";
import { noClusterTls, useClusterTls } from "./cli-tls.ts";
import { TLS_DIR } from "./certs.ts";

export const CLUSTER_FILE = "cluster.json";
export const DEFAULT_CLUSTER_DIR = "./cluster";
export const DEFAULT_BASE_PORT = 7001;
/** A member's peer (Raft) port when its --cluster entry names none: its client port plus this. */
export const PEER_PORT_OFFSET = 10000;
/** Most nodes one `kv cluster up` starts: a Raft group wants 3 or 5; past a few dozen it is a mistake. */
export const NODES_MAX = 32;
/** Seconds `up` waits for a leader and every node to answer, by default. */
export const UP_TIMEOUT_S_DEFAULT = 30;
export const LOOPBACK = "127.0.0.1";

export interface ClusterNode {
  name: string;
  id: number;
  /** Client address, host:port. */
  addr: string;
  /** Peer (Raft) address, host:port. */
  peer: string;
  /** The process started for it by the last `up` (or found running then). */
  pid: number;
  /** The exact argv that restarts this node on its data (run in `cwd`). */
  start: string[];
  cwd: string;
  log: string;
  dataDir: string;
}

export interface ClusterFile {
  /** The --cluster-id token every node was started with, chosen on the first `up`. */
  clusterId: string;
  basePort: number;
  /** `kv serve` flags passed through by the last `up` that gave any. */
  serveFlags: string[];
  /** The members, by id (ids grow: `kv cluster add` takes the next one, `remove` leaves a gap). */
  nodes: ClusterNode[];
  /** Ids of nodes `kv cluster remove` removed (never given again). */
  removed?: number[];
  /** Started with --tls: every node serves TLS only on its client port and peers use mutual TLS (certificates in DIR/tls). */
  tls?: boolean;
}

/** What `up` was asked; count and basePort are undefined when not given. */
export interface UpOptions {
  count: number | undefined;
  basePort: number | undefined;
  dataDir: string;
  detach: boolean;
  /** --tls (absent without it). */
  tls?: true;
  timeoutMs: number;
  serveFlags: string[];
}

/** `up`'s own flags (the rest go to every `kv serve`), for parsing and for --help. */
export const upArgs = {
  nodes: { type: "positional", required: false, description: "How many nodes (omit to restart the cluster already in --data-dir)", valueHint: "N" },
  "base-port": { type: "string", description: `Client port of node 1; node i gets base+i-1, its peer port that +${PEER_PORT_OFFSET} (default ${DEFAULT_BASE_PORT})`, valueHint: "port" },
  "data-dir": { type: "string", description: `The cluster's directory: cluster.json and n1, n2, ... (default ${DEFAULT_CLUSTER_DIR})`, valueHint: "dir" },
  detach: { type: "boolean", description: "Exit once a leader is elected and leave the nodes running (default: a live status view until Ctrl-C, which stops them)" },
  timeout: { type: "string", description: `Seconds to wait for a leader and every node to answer (default ${UP_TIMEOUT_S_DEFAULT})`, valueHint: "s" },
  tls: { type: "boolean", description: "Client TLS and peer mutual TLS, with a throwaway CA and certificates made (by openssl) in DIR/tls; kept for restarts" },
} as const satisfies ArgsDef;

/** `kv serve` flags the launcher sets itself for each node, and why the user cannot. */
const LAUNCHER_SET: Record<string, string> = {
  id: "node i gets --id i",
  port: "node i gets --port base+i-1 (use --base-port)",
  host: "the cluster listens on 127.0.0.1",
  cluster: "the launcher names the members",
  "cluster-id": "the launcher chooses it on the first up and keeps it in cluster.json",
  "peer-port": "each node's peer port is its client port +10000",
};

function flagParts(token: string): { name: string; value: string | undefined } {
  const body = token.replace(/^--?/, "");
  const eq = body.indexOf("=");
  return eq < 0 ? { name: body, value: undefined } : { name: body.slice(0, eq), value: body.slice(eq + 1) };
}

/**
 * Splits `kv cluster up`'s command line into its own options and the `kv serve` flags passed to
 * every node, checked against serve's definition (`serveDef`) so a typo fails here, once, rather
 * than in N logs. Throws ConfigError.
 */
export function parseUpArgs(rawArgs: readonly string[], serveDef: ArgsDef): UpOptions {
  const own = new Map<string, string | true>();
  const positionals: string[] = [];
  const serveFlags: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const t = rawArgs[i]!;
    if (t === "--") throw new ConfigError("unexpected argument: --");
    if (!t.startsWith("-") || t === "-") {
      positionals.push(t);
      continue;
    }
    const { name, value } = flagParts(t);
    const takeValue = (): string => {
      if (value !== undefined) return value;
      const next = rawArgs[i + 1];
      if (next === undefined) throw new ConfigError(`${t} needs a value`);
      i++;
      return next;
    };
    if (name === "detach" || name === "no-detach") {
      if (value !== undefined) throw new ConfigError(`${t}: --detach takes no value`);
      own.set("detach", name === "detach" ? true : "false");
      continue;
    }
    if (name === "tls") {
      if (value !== undefined) throw new ConfigError(`${t}: --tls takes no value`);
      own.set("tls", true);
      continue;
    }
    if (name === "base-port" || name === "data-dir" || name === "timeout") {
      own.set(name, takeValue());
      continue;
    }
    if (name in LAUNCHER_SET) throw new ConfigError(`--${name} cannot be given to kv cluster up: ${LAUNCHER_SET[name]}`);
    const def = (serveDef as Record<string, { type?: string }>)[name];
    if (def === undefined || def.type === "positional") throw new ConfigError(`unknown option: --${name} (neither a flag of kv cluster up nor of kv serve)`);
    if (def.type === "boolean") {
      serveFlags.push(t);
      continue;
    }
    const v = takeValue();
    const opts = (def as { options?: readonly string[] }).options;
    if (def.type === "enum" && opts !== undefined && !opts.includes(v)) throw new ConfigError(`--${name}: '${v}' is not one of ${opts.join(", ")}`);
    serveFlags.push(`--${name}`, v);
  }
  if (positionals.length > 1) throw new ConfigError(`unexpected argument: ${positionals[1]} (usage: kv cluster up N [flags])`);
  const count = positionals.length === 0 ? undefined : parseInteger(positionals[0]!, "N (the number of nodes)", 1, NODES_MAX);
  const bp = own.get("base-port");
  const basePort = typeof bp === "string" ? parseInteger(bp, "--base-port", 1, 65535 - PEER_PORT_OFFSET) : undefined;
  if (basePort !== undefined && count !== undefined && basePort + count - 1 > 65535 - PEER_PORT_OFFSET) {
    throw new ConfigError(`--base-port: ${basePort} leaves no room for ${count} nodes (the last peer port would be ${basePort + count - 1 + PEER_PORT_OFFSET}, past 65535)`);
  }
  const to = own.get("timeout");
  const timeoutS = typeof to === "string" ? parseInteger(to, "--timeout", 1, 3600) : UP_TIMEOUT_S_DEFAULT;
  const dd = own.get("data-dir");
  return {
    count,
    basePort,
    dataDir: typeof dd === "string" ? dd : DEFAULT_CLUSTER_DIR,
    detach: own.get("detach") === true,
    ...(own.get("tls") === true ? { tls: true as const } : {}),
    timeoutMs: timeoutS * 1000,
    serveFlags,
  };
}

/**
 * The argv prefix that runs this same program: the executable alone when compiled (argv is
 * ["bun", "/$bunfs/root/kv", ...]), else the runtime, its own flags and the entry script.
 */
export function selfArgv(execPath: string, main: string, execArgv: readonly string[]): string[] {
  const compiled = main.startsWith("/$bunfs/") || main.startsWith("B:/~BUN/");
  return compiled ? [execPath] : [execPath, ...execArgv, resolve(main)];
}

/** A fresh --cluster-id token. */
export function newClusterId(): string {
  return `kv-${randomBytes(8).toString("hex")}`;
}

/** The nodes of a cluster of `count` in `dir` (absolute) from `basePort`; pid and start are filled in at launch. */
export function layout(dir: string, count: number, basePort: number): ClusterNode[] {
  const nodes: ClusterNode[] = [];
  for (let id = 1; id <= count; id++) {
    const port = basePort + id - 1;
    const dataDir = join(dir, `n${id}`);
    nodes.push({ name: `n${id}`, id, addr: `${LOOPBACK}:${port}`, peer: `${LOOPBACK}:${port + PEER_PORT_OFFSET}`, pid: 0, start: [], cwd: dir, log: join(dataDir, "kv.log"), dataDir });
  }
  return nodes;
}

export function portOf(addr: string): number {
  return Number(addr.slice(addr.lastIndexOf(":") + 1));
}

/** The --cluster value naming every member: `id=host:port`, with `@peerport` where it is not port+10000. */
export function membersArg(nodes: readonly ClusterNode[]): string {
  return nodes
    .map((n) => {
      const peerPort = portOf(n.peer);
      return peerPort === portOf(n.addr) + PEER_PORT_OFFSET ? `${n.id}=${n.addr}` : `${n.id}=${n.addr}@${peerPort}`;
    })
    .join(",");
}

/** The argv that runs `node` (on its data, as a member of `nodes`). */
export function nodeArgv(self: readonly string[], node: ClusterNode, nodes: readonly ClusterNode[], clusterId: string, serveFlags: readonly string[], tlsDir?: string): string[] {
  // With TLS, the client port serves TLS only (--port 0) and the node's certificate also serves its peer links.
  const port = String(portOf(node.addr));
  const cert = (n: string) => join(tlsDir ?? "", n);
  const ports =
    tlsDir === undefined
      ? ["--port", port]
      : ["--port", "0", "--tls-port", port, "--tls-cert-file", cert(`node${node.id}.crt`), "--tls-key-file", cert(`node${node.id}.key`), "--tls-ca-cert-file", cert("ca.crt"), "--tls-cluster"];
  return [
    ...self,
    "serve",
    "--id",
    String(node.id),
    "--host",
    LOOPBACK,
    ...ports,
    "--data-dir",
    node.dataDir,
    "--cluster",
    membersArg(nodes),
    "--cluster-id",
    clusterId,
    ...serveFlags,
  ];
}

export function clusterFilePath(dir: string): string {
  return join(dir, CLUSTER_FILE);
}

function damaged(path: string, what: string): StartupError {
  return new StartupError(`${path} is damaged: ${what}`, { file: path, hint: "fix or remove it (the nodes' data dirs n1, n2, ... are what matter; kv cluster up N writes a new one)" });
}

/** DIR/cluster.json, checked; undefined when there is none. Throws StartupError when it cannot be used. */
export function readClusterFile(dir: string): ClusterFile | undefined {
  const path = clusterFilePath(dir);
  if (!existsSync(path)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw damaged(path, (e as Error).message);
  }
  const f = raw as Partial<ClusterFile>;
  if (typeof f !== "object" || f === null) throw damaged(path, "not a JSON object");
  if (typeof f.clusterId !== "string" || f.clusterId === "") throw damaged(path, "no clusterId");
  if (!Number.isInteger(f.basePort)) throw damaged(path, "no basePort");
  if (!Array.isArray(f.serveFlags) || !f.serveFlags.every((s) => typeof s === "string")) throw damaged(path, "serveFlags is not a list of strings");
  if (!Array.isArray(f.nodes) || f.nodes.length === 0 || f.nodes.length > NODES_MAX) throw damaged(path, "nodes is not a list of 1 to 32 nodes");
  if (f.removed !== undefined && (!Array.isArray(f.removed) || !f.removed.every((id) => Number.isInteger(id) && id > 0))) throw damaged(path, "removed is not a list of node ids");
  f.nodes.forEach((n, i) => {
    const prev = i === 0 ? 0 : (f.nodes![i - 1]!.id as number);
    const ok =
      typeof n === "object" &&
      n !== null &&
      Number.isInteger(n.id) &&
      n.id > prev &&
      n.name === `n${n.id}` &&
      typeof n.addr === "string" &&
      Number.isInteger(portOf(n.addr)) &&
      typeof n.peer === "string" &&
      Number.isInteger(portOf(n.peer)) &&
      Number.isInteger(n.pid) &&
      Array.isArray(n.start) &&
      n.start.every((s) => typeof s === "string") &&
      typeof n.cwd === "string" &&
      typeof n.log === "string" &&
      typeof n.dataDir === "string";
    if (!ok) throw damaged(path, `node ${i + 1} is not {name: "n<id>", id (above the one before), addr, peer, pid, start, cwd, log, dataDir}`);
  });
  if (f.tls !== undefined && f.tls !== true) throw damaged(path, "tls is not true");
  // The CLI talks to a TLS cluster with its CA and client certificate.
  if (f.tls === true) useClusterTls(join(dir, TLS_DIR));
  else noClusterTls();
  // Where the nodes' data is now: DIR/n<i>, wherever DIR was when the file was written.
  for (const n of f.nodes) {
    n.dataDir = join(dir, n.name);
    n.log = join(n.dataDir, "kv.log");
  }
  return f as ClusterFile;
}

/** Writes DIR/cluster.json whole (a temp file renamed over it: a reader never sees half of it). */
export function writeClusterFile(dir: string, file: ClusterFile): void {
  const path = clusterFilePath(dir);
  const tmp = `${path}.${process.pid}.tmp`;
  // Owner-only: the nodes' argv may hold --requirepass / --masterauth.
  writeFileSync(tmp, JSON.stringify(file, null, 2) + "\n", { mode: 0o600 });
  renameSync(tmp, path);
}
