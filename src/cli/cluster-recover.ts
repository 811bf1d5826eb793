// `kv cluster recover ID`: disaster recovery of the local cluster in DIR/cluster.json when a majority
// of its voters is lost for good. With every node stopped, node ID (a survivor) is started once with
// its recorded argv plus `--force-new-cluster` (src/node/backup.ts forceNewCluster: it becomes the
// only member of a new cluster, keeping its data), and cluster.json then describes that cluster: the
// new cluster id, the node alone (the others marked removed, so their ids are never given again),
// and its recorded argv naming only itself, so `status`, `restart`, `up` and `add` never try the
// lost members. Their data dirs stay where they are (of the old cluster: to be deleted).
import { type ArgsDef } from "citty";
import { closeSync, fstatSync, openSync, readFileSync, writeSync } from "node:fs";
import { resolve } from "node:path";
import { parseInteger } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { type ClusterFile, type ClusterNode, DEFAULT_CLUSTER_DIR, membersArg, readClusterFile, writeClusterFile } from "./cluster-layout.ts";
import { isAlive, nodePids } from "./cluster-proc.ts";
import { askNode } from "./cluster-status.ts";
import { StartupError } from "./fatal.ts";
import { refuseBadArgs } from "./strict.ts";

/** Seconds the survivor has to load its data and lead its new cluster, by default. */
export const RECOVER_TIMEOUT_S_DEFAULT = 60;
const ASK_MS = 1000;
const POLL_MS = 100;
const LOG_TAIL_LINES = 15;

export const recoverArgs = {
  id: { type: "positional", required: true, description: "The surviving node that becomes the new cluster (pick the one with the highest raft_last_index)", valueHint: "ID" },
  "data-dir": { type: "string", description: `The cluster's directory (default ${DEFAULT_CLUSTER_DIR})`, valueHint: "dir" },
  timeout: { type: "string", description: `Seconds the node has to load its data and lead (default ${RECOVER_TIMEOUT_S_DEFAULT})`, valueHint: "s" },
} as const satisfies ArgsDef;

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

function logTail(path: string, from: number): string {
  try {
    const lines = readFileSync(path, "latin1").slice(from).trimEnd().split("\n").slice(-LOG_TAIL_LINES);
    return lines.map((l) => `  | ${l}`).join("\n");
  } catch {
    return "";
  }
}

/**
 * `argv` for a node that is now its cluster's only member: `--cluster` names it alone, `--cluster-id`
 * is the new id, and `--join` (an added node's) goes (it is a member on its own data now).
 */
export function soleMemberArgv(argv: readonly string[], node: ClusterNode, clusterId: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--join" || a === "--force-new-cluster") continue;
    if (a === "--cluster" || a === "--cluster-id") {
      out.push(a, a === "--cluster" ? membersArg([node]) : clusterId);
      i++;
      continue;
    }
    if (a.startsWith("--cluster=")) out.push(`--cluster=${membersArg([node])}`);
    else if (a.startsWith("--cluster-id=")) out.push(`--cluster-id=${clusterId}`);
    else out.push(a);
  }
  return out;
}

export async function recover(rawArgs: readonly string[], args: { id: string; "data-dir"?: string; timeout?: string }): Promise<void> {
  refuseBadArgs(rawArgs, recoverArgs);
  const id = parseInteger(args.id, "ID", 1, 2 ** 31 - 1);
  const timeoutMs = (args.timeout === undefined ? RECOVER_TIMEOUT_S_DEFAULT : parseInteger(args.timeout, "--timeout", 1, 3600)) * 1000;
  const dir = resolve(args["data-dir"] ?? DEFAULT_CLUSTER_DIR);
  const file: ClusterFile | undefined = readClusterFile(dir);
  if (file === undefined) throw new ConfigError(`no cluster in ${dir} (kv cluster up N makes one)`);
  const node = file.nodes.find((n) => n.id === id);
  if (node === undefined) throw new ConfigError(`node ${id} is not in ${dir}'s cluster.json (nodes: ${file.nodes.map((n) => n.id).join(", ")})`);
  if (node.start.length === 0) throw new StartupError(`${node.name} has no recorded command line in cluster.json`, { hint: "start the cluster with kv cluster up, which records it" });
  // A node still running may be part of a quorum that is not lost: nothing is touched while any runs.
  const running = file.nodes.flatMap((n) => nodePids(n.dataDir, n.pid).map((pid) => `${n.name} (pid ${pid})`));
  if (running.length > 0) {
    throw new StartupError(`nodes of this cluster are running: ${running.join(", ")}; stop them first`, {
      hint: `kv cluster down --data-dir ${dir} (only when a majority of the voters is lost for good: with a quorum, replace the lost nodes instead)`,
    });
  }

  // Its recorded argv as it is (the members it names are ignored: the data dir's membership is
  // rewritten), but an added node's --join, which --force-new-cluster refuses.
  const argv = node.start.filter((a) => a !== "--join");
  const fd = openSync(node.log, "a");
  let logFrom = 0;
  let pid: number;
  try {
    const line = `--- ${new Date().toISOString()} kv cluster recover: ${[...argv, "--force-new-cluster"].join(" ")}\n`;
    logFrom = fstatSync(fd).size + Buffer.byteLength(line);
    writeSync(fd, line);
    const proc = Bun.spawn([...argv, "--force-new-cluster"], { cwd: node.cwd, stdin: "ignore", stdout: fd, stderr: fd, detached: true, env: process.env });
    proc.unref();
    pid = proc.pid;
  } finally {
    closeSync(fd);
  }
  say(`started ${node.name} (pid ${pid}) with --force-new-cluster; log ${node.log}`);

  // It answers as the leader of a cluster with another id.
  const deadline = Date.now() + timeoutMs;
  let last = "it does not answer yet";
  let newId: string;
  for (;;) {
    if (!isAlive(pid)) {
      const tail = logTail(node.log, logFrom);
      throw new StartupError(`${node.name} (pid ${pid}) exited${tail === "" ? "" : `; the end of its log:\n${tail}`}`, { file: node.log, hint: "cluster.json is unchanged" });
    }
    const a = await askNode(node.addr, ASK_MS);
    if ("info" in a && a.info !== null) {
      const r = a.info;
      if (r.role === "leader" && r.clusterId !== "" && r.clusterId !== file.clusterId) {
        newId = r.clusterId;
        break;
      }
      last = `${r.role} of cluster ${r.clusterId}`;
    } else if ("error" in a) {
      last = `it does not answer (${a.error})`;
    }
    if (Date.now() >= deadline) {
      throw new StartupError(`${node.name} did not lead a new cluster within ${Math.round(timeoutMs / 1000)} s: ${last}`, { file: node.log, hint: `read its log ${node.log}; cluster.json is unchanged` });
    }
    await Bun.sleep(POLL_MS);
  }

  const lost = file.nodes.filter((n) => n.id !== id);
  // Re-read: nothing else should have changed it, but a rewrite keeps what is there.
  const now = readClusterFile(dir) ?? file;
  const rec = now.nodes.find((n) => n.id === id) ?? node;
  rec.pid = pid;
  rec.start = soleMemberArgv(rec.start, rec, newId);
  now.clusterId = newId;
  now.nodes = [rec];
  now.removed = [...new Set([...(now.removed ?? []), ...lost.map((n) => n.id)])].sort((a, b) => a - b);
  writeClusterFile(dir, now);
  say(`${node.name} leads new cluster ${newId} alone (was ${file.clusterId}), its data kept`);
  if (lost.length > 0) {
    say(`dropped ${lost.map((n) => n.name).join(", ")} from cluster.json (marked removed); their data dirs are of the old cluster: delete them (${lost.map((n) => n.dataDir).join(" ")})`);
  }
  say("grow it again with kv cluster add (new ids, fresh data dirs)");
}
