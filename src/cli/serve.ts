// `kv serve`: parse flags into a ServerConfig, start one node, handle signals.
import { type ArgsDef, defineCommand } from "citty";
import { mkdirSync } from "node:fs";
import {
  DEFAULT_CONFIG,
  DEFAULT_HOST,
  DEFAULT_PORT,
  ELECTION_MS_DEFAULT,
  HEARTBEAT_MS_DEFAULT,
  MAX_STALENESS_MS_DEFAULT,
  MAX_STALENESS_MS_MAX,
  parseBytes,
  parseClusterSpec,
  parseInteger,
  parseOutputLimit,
  type ClusterConfig,
  type ServerConfig,
  validateConfig,
} from "../config.ts";
import { PubSubHub } from "../server/pubsub.ts";
import { ClusterNode, loadMembers } from "../node/cluster-node.ts";
import { nodeIo } from "../storage/index.ts";
import { forceNewCluster } from "../node/backup.ts";
import { ConfigError, CorruptLogError } from "../errors.ts";
import { slowDiskIoFromEnv } from "../node/proposal.ts";
import { assert } from "../errors.ts";
import { fnv1a } from "../node/cluster-id.ts";
import { DataDirError, FSYNC_MODES, type FsyncMode, SEGMENT_BYTES_MIN } from "../storage/index.ts";
import type { Conn } from "../server/server.ts";
import { log, setLogLevel, type LogLevelName } from "../log.ts";
import { refuseBadArgs } from "./strict.ts";
import { StartupError } from "./fatal.ts";
import { authArgs, authConfig, configuredUsers, linkAuth } from "./serve-auth.ts";
import { KvServer } from "../server/server.ts";
import { TLS_ARGS, tlsFromArgs, openTls, type OpenedTls, watchSighup } from "./serve-tls.ts";

const LOG_LEVELS = ["silent", "error", "warn", "info", "debug", "trace"] as const;

const serveArgs = {
  id: { type: "string", description: "Node id (a positive integer)", default: "1" },
  host: { type: "string", description: "Address to listen on", default: DEFAULT_HOST },
  port: { type: "string", description: `TCP port for clients; 0 picks a free one (default ${DEFAULT_PORT})`, default: String(DEFAULT_PORT) },
  "data-dir": { type: "string", description: "Directory for this node's data", default: DEFAULT_CONFIG.dataDir },
  "log-level": { type: "enum", options: [...LOG_LEVELS], description: "Log level", default: "info" },
  maxclients: { type: "string", description: "Most client connections at once", default: String(DEFAULT_CONFIG.maxClients) },
  "proto-max-bulk-len": { type: "string", description: "Largest bulk string accepted, at most 512mb (e.g. 64mb)", default: "512mb" },
  "client-query-buffer-limit": { type: "string", description: "Most bytes buffered for one unfinished command (e.g. 1gb)", default: "1gb" },
  "client-output-buffer-limit": { type: "string", description: "Unsent reply bytes past which a client's input is paused (e.g. 64mb)", default: "64mb" },
  "pending-writes-limit": {
    type: "string",
    description: "Bytes of writes accepted but not yet durable, across all clients, past which kv stops reading clients whose next command is a write (e.g. 256mb)",
    default: "256mb",
  },
  "shutdown-timeout": { type: "string", description: "Seconds to flush replies on SIGTERM/SIGINT", default: "10" },
  fsync: { type: "enum", options: [...FSYNC_MODES], description: "When a write is acknowledged: always (after fdatasync), everysec, no", default: "always" },
  "snapshot-log-bytes": { type: "string", description: "Log growth since the last snapshot that triggers a new one (e.g. 64mb)", default: "64mb" },
  cluster: {
    type: "string",
    description: "Initial members, id=host:port[@peerport],... (peer port: client port + 10000 by default); omit for a one-member group (a single node)",
  },
  join: {
    type: "boolean",
    description:
      "Join the running cluster --cluster names (its members and this node): a fresh data dir is not bootstrapped; the node waits until a member adds it (RAFT.ADD, or kv cluster add). Needs --cluster-id. Ignored once the data dir holds a cluster",
  },
  "force-new-cluster": {
    type: "boolean",
    description:
      "Disaster recovery: make this surviving member of a cluster that lost its majority a one-member cluster with a new cluster id, keeping its data (its snapshot and every entry of its log); the other members are marked removed. Use once, then restart without it",
  },
  "peer-port": { type: "string", description: "Port this node listens on for its peers (default: its --cluster entry's peer port)" },
  "cluster-id": { type: "string", description: "Token every member shares (default: derived from --cluster); a peer with another is refused" },
  "heartbeat-interval": { type: "string", description: "Leader heartbeat interval in ms", default: String(HEARTBEAT_MS_DEFAULT) },
  "election-timeout": { type: "string", description: "Election timeout in ms (randomised in [t, 2t))", default: String(ELECTION_MS_DEFAULT) },
  "max-staleness": {
    type: "string",
    description: "Most ms a follower's READONLY reads may lag its leader (heard from it and applied its reported commit index within this); past it they answer -STALE",
    default: String(MAX_STALENESS_MS_DEFAULT),
  },
  "lease-reads": {
    type: "boolean",
    description:
      "The leader answers linearizable reads from its own state, without a round to a quorum, while it holds a lease (the election timeout less --lease-drift, from the heartbeats a quorum acknowledged). Relies on the members' clocks running at nearly the same rate; give it to every member",
  },
  "lease-drift": { type: "string", description: "With --lease-reads: the most the members' clocks may disagree over one election timeout, in ms (default: a tenth of --election-timeout)" },
  "wal-segment-bytes": { type: "string", description: "Size at which a log segment is closed and a new one started", default: "64mb" },
  "client-output-buffer-limit-pubsub": {
    type: "string",
    description: "Redis's client-output-buffer-limit pubsub: '<hard> <soft> <seconds>'; a subscriber whose unsent output passes hard, or soft for that long, is closed",
    default: "32mb 8mb 60",
  },
  "watch-history": { type: "string", description: "Latest change records kept for KV.WATCH ... FROM (0: none; a watch then starts at the next change)", default: "100000" },
  "watch-history-bytes": { type: "string", description: "Most bytes of change records kept for KV.WATCH ... FROM", default: "64mb" },
  ...TLS_ARGS,
  ...authArgs,
} as const satisfies ArgsDef;

export default defineCommand({
  meta: { name: "serve", description: "Run one kv node (RESP on TCP)" },
  args: serveArgs,
  async run({ args, rawArgs }) {
    setLogLevel(args["log-level"] as LogLevelName);
    refuseBadArgs(rawArgs, serveArgs);
    // A bad value throws ConfigError, reported with a pointer to --help (src/cli/fatal.ts).
    const config: ServerConfig = {
      ...DEFAULT_CONFIG,
      id: parseInteger(args.id, "--id", 1, 2 ** 31 - 1),
      host: args.host,
      port: parseInteger(args.port, "--port", 0, 65535),
      dataDir: args["data-dir"],
      maxClients: parseInteger(args.maxclients, "--maxclients", 1, 1_000_000),
      limits: {
        ...DEFAULT_CONFIG.limits,
        protoMaxBulkLen: parseBytes(args["proto-max-bulk-len"], "--proto-max-bulk-len"),
        queryBufferBytesMax: parseBytes(args["client-query-buffer-limit"], "--client-query-buffer-limit"),
      },
      clientOutputBufferLimit: parseBytes(args["client-output-buffer-limit"], "--client-output-buffer-limit"),
      pendingWritesLimit: parseBytes(args["pending-writes-limit"], "--pending-writes-limit"),
      shutdownTimeoutMs: parseInteger(args["shutdown-timeout"], "--shutdown-timeout", 0, 3600) * 1000,
      fsync: args.fsync as FsyncMode,
      snapshotLogBytes: parseBytes(args["snapshot-log-bytes"], "--snapshot-log-bytes"),
      walSegmentBytes: parseBytes(args["wal-segment-bytes"], "--wal-segment-bytes"),
      maxStalenessMs: parseInteger(args["max-staleness"], "--max-staleness", 1, MAX_STALENESS_MS_MAX),
      pubsubOutputLimit: parseOutputLimit(args["client-output-buffer-limit-pubsub"], "--client-output-buffer-limit-pubsub"),
      watchHistoryRecords: parseInteger(args["watch-history"], "--watch-history", 0, 100_000_000),
      watchHistoryBytes: parseBytes(args["watch-history-bytes"], "--watch-history-bytes"),
    };
    if (config.walSegmentBytes < SEGMENT_BYTES_MIN) throw new ConfigError(`--wal-segment-bytes: ${config.walSegmentBytes} is below the minimum, ${SEGMENT_BYTES_MIN}`);
    if (args.join === true && (args.cluster === undefined || args["cluster-id"] === undefined)) {
      throw new ConfigError("--join needs --cluster (the running members and this node) and --cluster-id (the running cluster's)");
    }
    Object.assign(config, tlsFromArgs(args));
    config.cluster = args.cluster !== undefined ? clusterConfig(args, config.id) : oneMemberConfig(args, config);
    if (args.join === true) config.cluster.join = true;
    const lease = leaseReads(args, config.cluster.electionMs);
    if (lease !== undefined) config.cluster.leaseReads = lease;
    authConfig(args, config);
    validateConfig(config);
    if (args["force-new-cluster"] === true) {
      if (args.join === true) throw new ConfigError("--force-new-cluster and --join do not go together");
      await forceNew(config);
    }
    await serve(config);
  },
});

/**
 * Without --cluster: a one-member group, this node its only voter. It listens for peers only when
 * --peer-port is given (nobody dials a group of one; a free port is not taken for nothing).
 */
function oneMemberConfig(args: Record<string, unknown>, config: ServerConfig): ClusterConfig {
  const peerPort = args["peer-port"] !== undefined ? parseInteger(String(args["peer-port"]), "--peer-port", 1, 65535) : null;
  const self = { id: config.id, addr: `${config.host}:${config.port}`, peer: `${config.host}:${peerPort ?? 0}` };
  const { heartbeatMs, electionMs } = timing(args);
  const clusterId = args["cluster-id"] !== undefined ? String(args["cluster-id"]) : `kv-${fnv1a(`${self.id}=${self.addr}@${self.peer}`)}`;
  if (clusterId === "" || new TextEncoder().encode(clusterId).length > 128) throw new ConfigError("--cluster-id: 1 to 128 bytes");
  return { members: [self], clusterId, peerPort, heartbeatMs, electionMs };
}

/**
 * --lease-reads [--lease-drift MS]: the leader's lease is the election timeout less the drift bound
 * (default a tenth of the election timeout), which must leave at least 1 ms.
 */
function leaseReads(args: Record<string, unknown>, electionMs: number): { driftMs: number } | undefined {
  if (args["lease-reads"] !== true) {
    if (args["lease-drift"] !== undefined) throw new ConfigError("--lease-drift goes with --lease-reads");
    return undefined;
  }
  const driftMs = args["lease-drift"] !== undefined ? parseInteger(String(args["lease-drift"]), "--lease-drift", 0, 600_000) : Math.ceil(electionMs / 10);
  if (driftMs >= electionMs) throw new ConfigError(`--lease-drift (${driftMs} ms) must be below --election-timeout (${electionMs} ms): the lease is their difference`);
  return { driftMs };
}

function timing(args: Record<string, unknown>): { heartbeatMs: number; electionMs: number } {
  const heartbeatMs = parseInteger(String(args["heartbeat-interval"]), "--heartbeat-interval", 1, 60_000);
  const electionMs = parseInteger(String(args["election-timeout"]), "--election-timeout", 2, 600_000);
  if (electionMs < 2 * heartbeatMs) throw new ConfigError(`--election-timeout (${electionMs} ms) must be at least twice --heartbeat-interval (${heartbeatMs} ms)`);
  return { heartbeatMs, electionMs };
}

function clusterConfig(args: Record<string, unknown>, id: number): ClusterConfig {
  const members = parseClusterSpec(String(args.cluster));
  const self = members.find((m) => m.id === id);
  if (self === undefined) throw new ConfigError(`--cluster does not name this node (--id ${id})`);
  const peerPort = args["peer-port"] !== undefined ? parseInteger(String(args["peer-port"]), "--peer-port", 1, 65535) : Number(self.peer.slice(self.peer.lastIndexOf(":") + 1));
  const { heartbeatMs, electionMs } = timing(args);
  const clusterId = args["cluster-id"] !== undefined ? String(args["cluster-id"]) : `kv-${fnv1a(members.map((m) => `${m.id}=${m.addr}@${m.peer}`).join(","))}`;
  if (clusterId === "" || new TextEncoder().encode(clusterId).length > 128) throw new ConfigError("--cluster-id: 1 to 128 bytes");
  return { members, clusterId, peerPort, heartbeatMs, electionMs };
}

/** --force-new-cluster: rewrites the data dir before the node opens it (src/node/backup.ts). */
async function forceNew(config: ServerConfig): Promise<void> {
  let r;
  try {
    r = await forceNewCluster(config.dataDir, config.id);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new StartupError(`--force-new-cluster on ${config.dataDir} failed: ${(e as Error).message}`, {}, e);
  }
  log.warn(
    `--force-new-cluster: node ${config.id} left cluster ${r.previousClusterId} and is now the only member of new cluster ${r.clusterId}, ` +
      `at log index ${r.index} (term ${r.term}, ${r.keys} keys; ${r.keptPastCommit} entries past its durable commit index kept); ` +
      `members ${r.dropped.join(",") || "(none)"} dropped and marked removed. Restart it without --force-new-cluster from now on; add members with kv cluster add or RAFT.ADD`,
  );
}

/** A one-member group that makes no progress toward serving for this long at start is reported, not waited for. */
const SERVING_STALL_MS = 10_000;

/**
 * Started without --cluster and --peer-port on a data dir that already holds a group in which this
 * node has a peer address (a cluster member restarted by hand): it listens there, as its peers
 * expect. Nothing for a fresh dir or a group of one started without a peer port.
 */
function heldPeerAddress(dataDir: string, id: number): { host: string; port: number } | undefined {
  let held;
  try {
    held = loadMembers(nodeIo, dataDir);
  } catch {
    return undefined; // a damaged file is reported when the node opens the dir
  }
  const me = held?.members.find((m) => m.id === id);
  if (me === undefined) return undefined;
  const at = me.peer.lastIndexOf(":");
  const port = Number(me.peer.slice(at + 1));
  return Number.isInteger(port) && port > 0 && port <= 65535 ? { host: me.peer.slice(0, at), port } : undefined;
}

async function openNode(config: ServerConfig, tls: OpenedTls, changeSink: PubSubHub): Promise<ClusterNode<Conn>> {
  const io = slowDiskIoFromEnv(process.env);
  const c = config.cluster;
  assert(c !== undefined, "serve without a group configuration");
  const self = c.members.find((m) => m.id === config.id)!;
  const peerHost = self.peer.slice(0, self.peer.lastIndexOf(":"));
  const unsafeLocalReads = process.env.KV_TEST_UNSAFE_LOCAL_READS === "1";
  let leaseMs = c.leaseReads !== undefined ? c.electionMs - c.leaseReads.driftMs : undefined;
  if (leaseMs !== undefined && process.env.KV_TEST_LEASE_MS !== undefined) {
    // The tests' proof that a lease longer than the followers' promise serves stale reads.
    leaseMs = parseInteger(process.env.KV_TEST_LEASE_MS, "KV_TEST_LEASE_MS", 1, 3_600_000);
    log.warn(`KV_TEST_LEASE_MS=${leaseMs}: the leader's lease is set by hand (testing only; past the election timeout NOT linearizable)`);
  }
  if (unsafeLocalReads) log.warn("KV_TEST_UNSAFE_LOCAL_READS=1: reads are served from local state without a read barrier (testing only; NOT linearizable)");
  const node = await ClusterNode.open<Conn>({
    id: config.id,
    dataDir: config.dataDir,
    fsync: config.fsync,
    segmentBytesMax: config.walSegmentBytes,
    snapshotLogBytes: config.snapshotLogBytes,
    members: c.members,
    clusterId: c.clusterId,
    peerListen: c.peerPort === null ? heldPeerAddress(config.dataDir, config.id) : { host: peerHost, port: c.peerPort },
    heartbeatMs: c.heartbeatMs,
    electionMs: c.electionMs,
    ...(leaseMs !== undefined ? { leaseMs } : {}),
    join: c.join === true,
    io,
    unsafeLocalReads,
    changeSink,
    ...(tls.peer !== undefined ? { peerTls: tls.peer } : {}),
    linkAuth: linkAuth(config),
    aclUsers: configuredUsers(config),
  });
  return node;
}

/** Damage found while opening the data dir or applying its log, as the report an operator acts on (exit 2). */
function startupFailure(e: unknown, config: ServerConfig): unknown {
  if (e instanceof CorruptLogError) {
    const hint = e.hint ?? `to cut the log at the damage and see exactly what is dropped: kv repair --data-dir ${config.dataDir}`;
    return new StartupError(`the data in ${config.dataDir} is damaged; kv will not start on it: ${e.message}`, { file: e.file, offset: e.offset, hint, exitCode: 2 }, e);
  }
  if (e instanceof DataDirError || (e as { code?: string }).code !== undefined) {
    return new StartupError(`cannot use data dir ${config.dataDir}: ${(e as Error).message}`, {}, e);
  }
  return e;
}

export async function serve(config: ServerConfig): Promise<void> {
  let durable: ClusterNode<Conn>;
  // Certificates are read (and checked) before the data dir is opened: a bad file is a ConfigError.
  const tls = openTls(config);
  // Listens from the open on: the log's replay fills KV.WATCH's history.
  const hub = new PubSubHub(config.watchHistoryRecords, config.watchHistoryBytes);
  try {
    mkdirSync(config.dataDir, { recursive: true });
    durable = await openNode(config, tls, hub);
  } catch (e) {
    throw startupFailure(e, config);
  }
  // Until the node serves, a stop (an entry it cannot apply) is a startup failure, reported by
  // whenServing; after, the process exits as on any crash.
  let serving = false;
  durable.onFatal = (err) => {
    if (!serving) return;
    log.fatal(`raft node stopped: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(70);
  };
  const server = new KvServer(config, durable, tls.client, hub);
  const sole = durable.soleVoter();
  if (sole) {
    // The only voter elects itself and applies its log before clients connect: nothing it serves is from before its restart.
    durable.start();
    let ready: boolean;
    try {
      ready = await durable.whenServing(SERVING_STALL_MS);
    } catch (e) {
      await durable.close().catch(() => {});
      throw startupFailure(e, config);
    }
    if (!ready) {
      const failed = durable.storageFailed;
      if (failed !== undefined) throw new StartupError(`cannot use data dir ${config.dataDir}: writing its log failed at start (${failed.message})`, {}, failed);
      throw new StartupError(`node ${config.id} did not become able to serve (leader of its one-member group, log applied): no progress in ${SERVING_STALL_MS / 1000} s`, {});
    }
  }
  serving = true;
  // The time includes applying the log for the only voter (whenServing), as the single node's replay did.
  const r = durable.recovery;
  log.info(
    `loaded ${config.dataDir}: snapshot at index ${r.snapshotIndex} (${r.snapshotEntries} keys) + ${r.replayedRecords} log records, ` +
      `last index ${r.lastIndex}, ${durable.fsm.db.dbsize()} keys in ${r.durationMs} ms`,
  );
  try {
    server.start();
  } catch (e) {
    const port = config.tls !== undefined && config.port === 0 ? config.tls.port : config.port;
    throw new StartupError(`cannot listen on ${config.host}:${port}: ${listenFailure(e)}`, {}, e);
  }
  // Members reach one another's client port over TLS when peer TLS is on (links to the leader).
  durable.advertise(`${config.host}:${server.port === 0 || tls.peer !== undefined ? server.tlsPort : server.port}`);
  if (!sole) durable.start();
  const peers = durable.peerPort === 0 ? "no peer port" : `peers on ${durable.peerPort}`;
  const keys = sole ? `, ${durable.fsm.db.dbsize()} keys at index ${durable.applied}` : "";
  const ports = [server.port !== 0 ? `${config.host}:${server.port}` : "", server.tlsPort !== 0 ? `${config.host}:${server.tlsPort} (TLS, client certificates: ${config.tls!.authClients})` : ""].filter((x) => x !== "").join(" and ");
  log.info(
    `kv node ${config.id} of cluster ${durable.clusterId} listening on ${ports}, ${peers}${tls.peer !== undefined ? " (mutual TLS)" : ""}${keys} (data dir ${config.dataDir}, pid ${process.pid})`,
  );
  watchSighup(server);

  let signals = 0;
  const onSignal = (sig: string) => {
    signals++;
    if (signals > 1) {
      log.warn(`second ${sig}: exiting now`);
      process.exit(1);
    }
    log.info(`${sig} received: closing ${server.conns.size} client(s), up to ${config.shutdownTimeoutMs} ms`);
    const started = Date.now();
    void server.shutdown().then((clean) => {
      log.info(`shutdown ${clean ? "complete" : "timed out; remaining clients dropped"} in ${Date.now() - started} ms`);
      process.exit(0);
    });
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
}

/** Why a listen failed, in words an operator can act on (Bun's own message is "Failed to listen at HOST"). */
export function listenFailure(e: unknown): string {
  switch ((e as { code?: string }).code) {
    case "EADDRINUSE":
      return "address already in use (is another kv or redis-server running? pick another --port)";
    case "EADDRNOTAVAIL":
      return "address not available on this machine (check --host)";
    case "EACCES":
      return "permission denied (ports below 1024 need privileges; pick another --port)";
    default:
      return `${(e as Error).message} (check --host and --port)`;
  }
}
