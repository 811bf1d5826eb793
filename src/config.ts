// Server configuration: defaults, units and validation. Pure.
import { ConfigError } from "./errors.ts";
import { DEFAULT_REQUEST_LIMITS, type RequestLimits } from "./resp/request-parser.ts";

/** When a write is acknowledged (Redis's appendfsync): see docs/storage.md for what each can lose. */
export type FsyncPolicy = "always" | "everysec" | "no";

export const DEFAULT_PORT = 6379;
export const DEFAULT_HOST = "127.0.0.1";

export interface ServerConfig {
  id: number;
  host: string;
  /** 0 picks a free port; the startup log line says which. */
  port: number;
  dataDir: string;
  /** Redis: maxclients. Connections past this get `-ERR max number of clients reached`. */
  maxClients: number;
  limits: RequestLimits;
  /** Unsent reply bytes past which kv stops reading a client's commands until it catches up. */
  clientOutputBufferLimit: number;
  /**
   * Bytes of writes accepted and not yet durable, across all clients, past which kv proposes no
   * more writes: a client whose next command is a write is not read until the log catches up.
   * Held at most: this plus one write (the check comes before each write).
   */
  pendingWritesLimit: number;
  /** Redis: shutdown-timeout, in ms here. Time allowed to flush replies on SIGTERM/SIGINT. */
  shutdownTimeoutMs: number;
  /** How often expired keys are swept, and the most keys one sweep may delete. */
  expireSweepIntervalMs: number;
  expireSweepKeysMax: number;
  fsync: FsyncPolicy;
  /** Log bytes appended since the last snapshot that trigger a new snapshot. */
  snapshotLogBytes: number;
  /** A WAL segment is closed and a new one started past this size. */
  walSegmentBytes: number;
  /**
   * --max-staleness: a follower answers a READONLY read from its own state only while it heard,
   * within this many ms, from its leader a message whose reported commit index it has applied
   * (docs/cluster.md, "Read modes"); otherwise `-STALE ...`.
   */
  maxStalenessMs: number;
  /** Redis's client-output-buffer-limit pubsub: subscribers past it are closed (see src/server/pubsub.ts). */
  pubsubOutputLimit: { hardBytes: number; softBytes: number; softSeconds: number };
  /** --watch-history / --watch-history-bytes: the latest change records KV.WATCH ... FROM can replay. */
  watchHistoryRecords: number;
  watchHistoryBytes: number;
  /** Set with --cluster: this node is a member of a Raft group. */
  cluster?: ClusterConfig;
  /** --requirepass: the `default` user's password (never logged or shown; CONFIG GET shows its SHA-256). */
  requirepass?: string;
  /** --aclfile: users in Redis's ACL file syntax, read at start and by ACL LOAD, written by ACL SAVE. */
  aclFile?: string;
  /** --protected-mode (Redis's): with no password for `default`, only loopback clients are served. */
  protectedMode: boolean;
  /** --masteruser/--masterauth: what this node's links to the leader's client port authenticate as. */
  masterUser?: string;
  masterAuth?: string;
  /** Client TLS (--tls-port ...): see src/server/tls.ts and docs/security.md. */
  tls?: TlsConfig;
  /** Peer mutual TLS (--peer-cert-file ...): see src/node/peer-tls.ts. */
  peerTls?: PeerTlsConfig;
}

/** Redis's tls-auth-clients: yes (a valid client certificate is required), optional (checked if sent), no (not asked for). */
export type TlsAuthClients = "yes" | "no" | "optional";
export const TLS_AUTH_CLIENTS: readonly TlsAuthClients[] = ["yes", "no", "optional"];

export interface TlsConfig {
  port: number;
  certFile: string;
  keyFile: string;
  /** CA bundle client certificates must chain to (needed unless authClients is "no"). */
  caCertFile?: string;
  authClients: TlsAuthClients;
}

export interface PeerTlsConfig {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** A member as --cluster names it. */
export interface ClusterMemberSpec {
  id: number;
  /** Client (RESP) address, host:port. */
  addr: string;
  /** Peer (Raft) address, host:port: the client port + PEER_PORT_OFFSET unless written `host:port@peerport`. */
  peer: string;
}

export interface ClusterConfig {
  members: ClusterMemberSpec[];
  clusterId: string;
  /** The port this node listens on for peers; null: no peer listener (a one-member group started without --peer-port). */
  peerPort: number | null;
  heartbeatMs: number;
  electionMs: number;
  /** --lease-reads: the leader serves linearizable reads under a lease of electionMs - leaseDriftMs (see src/node/lease.ts). */
  leaseReads?: { driftMs: number };
  /** --join: a fresh data dir joins the running cluster `members` name (no bootstrap; the leader adds it). */
  join?: boolean;
}

/** A member's peer port is its client port plus this, unless --cluster says otherwise (as Redis Cluster's bus port). */
export const PEER_PORT_OFFSET = 10000;
export const HEARTBEAT_MS_DEFAULT = 50;
export const ELECTION_MS_DEFAULT = 300;
/** --max-staleness: default and bounds (ms). */
export const MAX_STALENESS_MS_DEFAULT = 1000;
export const MAX_STALENESS_MS_MAX = 3_600_000;
/** Most members --cluster may name. */
export const CLUSTER_MEMBERS_MAX = 64;

function parsePort(text: string, what: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 65535) throw new ConfigError(`${what}: '${text}' is not a port (1-65535)`);
  return n;
}

/**
 * `1=127.0.0.1:7001,2=127.0.0.1:7002@17002,...`: each member's id and client address, and its peer
 * port after `@` (default: client port + PEER_PORT_OFFSET; the peer host is the client host).
 */
export function parseClusterSpec(text: string): ClusterMemberSpec[] {
  const members: ClusterMemberSpec[] = [];
  const parts = text.split(",").map((p) => p.trim()).filter((p) => p !== "");
  if (parts.length === 0) throw new ConfigError("--cluster: no members (expected 1=host:port,2=host:port,...)");
  if (parts.length > CLUSTER_MEMBERS_MAX) throw new ConfigError(`--cluster: ${parts.length} members, at most ${CLUSTER_MEMBERS_MAX}`);
  for (const part of parts) {
    const m = /^(\d+)=(.+):(\d+)(?:@(\d+))?$/.exec(part);
    if (m === null) throw new ConfigError(`--cluster: '${part}' is not id=host:port or id=host:port@peerport`);
    const id = Number(m[1]);
    if (!Number.isSafeInteger(id) || id < 1 || id > 2 ** 31 - 1) throw new ConfigError(`--cluster: member id '${m[1]}' is not a positive integer`);
    if (members.some((x) => x.id === id)) throw new ConfigError(`--cluster: member id ${id} appears twice`);
    const host = m[2]!;
    const port = parsePort(m[3]!, `--cluster member ${id}`);
    const peerPort = m[4] !== undefined ? parsePort(m[4], `--cluster member ${id} peer port`) : port + PEER_PORT_OFFSET;
    if (peerPort > 65535) throw new ConfigError(`--cluster member ${id}: peer port ${peerPort} (client port + ${PEER_PORT_OFFSET}) is past 65535: write it as host:port@peerport`);
    members.push({ id, addr: `${host}:${port}`, peer: `${host}:${peerPort}` });
  }
  return members.sort((a, b) => a.id - b.id);
}

/**
 * The request limits and the log's record limit agree. Every write is logged as one entry whose
 * payload is the command RESP-encoded behind a small header (COMMAND_ENTRY_OVERHEAD_BYTES), at
 * most RECORD_PAYLOAD_BYTES_MAX (513 MiB, in storage/codec.ts). `--proto-max-bulk-len` may not pass PROTO_MAX_BULK_LEN_MAX (512 MiB, the
 * longest string kv holds: STRING_BYTES_MAX), so a write of one maximal string with up to 1 MiB
 * of command name, key and options always fits. A write carrying more than the record limit in
 * several arguments (MSET a <300mb> b <300mb>) is refused with an error reply when proposed
 * (ClusterNode.propose), before it joins a batch; the server keeps serving everyone else.
 */
export const PROTO_MAX_BULK_LEN_MAX = 512 * 1024 * 1024;

/** Largest --pending-writes-limit: a log append of up to this plus one write stays well under the 4 GiB a buffer may take. */
export const PENDING_WRITES_LIMIT_MAX = 2 * 1024 * 1024 * 1024;
/** The least `--client-query-buffer-limit`, as Redis 7's (1mb): below it ordinary commands fail. */
export const QUERY_BUFFER_LIMIT_MIN = 1024 * 1024;

/** Checks what the flag parsers alone cannot: the limits' relations. Throws ConfigError. */
export function validateConfig(c: ServerConfig): void {
  if (c.limits.protoMaxBulkLen < 1 || c.limits.protoMaxBulkLen > PROTO_MAX_BULK_LEN_MAX) {
    throw new ConfigError(
      `--proto-max-bulk-len: ${c.limits.protoMaxBulkLen} is out of range [1, ${PROTO_MAX_BULK_LEN_MAX}] (512mb): ` +
        `kv holds no longer string, and one write of it must fit in one log record`,
    );
  }
  if (c.limits.queryBufferBytesMax < QUERY_BUFFER_LIMIT_MIN) {
    throw new ConfigError(`--client-query-buffer-limit: ${c.limits.queryBufferBytesMax} is below the minimum, ${QUERY_BUFFER_LIMIT_MIN} (1mb, as Redis)`);
  }
  if (c.pendingWritesLimit < 1 || c.pendingWritesLimit > PENDING_WRITES_LIMIT_MAX) {
    throw new ConfigError(
      `--pending-writes-limit: ${c.pendingWritesLimit} is out of range [1, ${PENDING_WRITES_LIMIT_MAX}] (2gb): ` +
        `there is no unlimited setting, and the writes of one log append are encoded into one buffer of up to this plus one write`,
    );
  }
}

export const DEFAULT_CONFIG: ServerConfig = {
  protectedMode: true,
  id: 1,
  host: DEFAULT_HOST,
  port: DEFAULT_PORT,
  dataDir: "./data",
  maxClients: 10_000,
  limits: DEFAULT_REQUEST_LIMITS,
  clientOutputBufferLimit: 64 * 1024 * 1024,
  pendingWritesLimit: 256 * 1024 * 1024,
  shutdownTimeoutMs: 10_000,
  expireSweepIntervalMs: 100,
  expireSweepKeysMax: 2_000,
  fsync: "always",
  snapshotLogBytes: 64 * 1024 * 1024,
  walSegmentBytes: 64 * 1024 * 1024,
  maxStalenessMs: MAX_STALENESS_MS_DEFAULT,
  pubsubOutputLimit: { hardBytes: 32 * 1024 * 1024, softBytes: 8 * 1024 * 1024, softSeconds: 60 },
  watchHistoryRecords: 100_000,
  watchHistoryBytes: 64 * 1024 * 1024,
};

/** `<hard> <soft> <soft seconds>` of Redis's client-output-buffer-limit class (sizes as parseBytes). */
export function parseOutputLimit(text: string, what: string): { hardBytes: number; softBytes: number; softSeconds: number } {
  const parts = text.trim().split(/\s+/);
  if (parts.length !== 3) throw new ConfigError(`${what}: '${text}' is not '<hard> <soft> <seconds>' (e.g. '32mb 8mb 60')`);
  const hardBytes = parseBytes(parts[0]!, what);
  // Redis reads 0 as no limit; kv holds no unbounded output.
  if (hardBytes < 1) throw new ConfigError(`${what}: the hard limit must be at least 1 byte (there is no unlimited setting)`);
  return { hardBytes, softBytes: parseBytes(parts[1]!, what), softSeconds: parseInteger(parts[2]!, what, 0, 1_000_000) };
}

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1000,
  kb: 1024,
  m: 1000 * 1000,
  mb: 1024 * 1024,
  g: 1000 * 1000 * 1000,
  gb: 1024 * 1024 * 1024,
};

/** Parses a size as Redis's config does: `1024`, `64kb`, `512mb`, `1gb` (k/m/g are powers of 1000). */
export function parseBytes(text: string, what: string): number {
  const m = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new ConfigError(`${what}: '${text}' is not a size (examples: 1048576, 64kb, 512mb, 1gb)`);
  return Number(m[1]) * unit;
}

/** Parses a whole number within [min, max]. */
export function parseInteger(text: string, what: string, min: number, max: number): number {
  if (!/^\s*-?\d+\s*$/.test(text)) throw new ConfigError(`${what}: '${text}' is not a whole number`);
  const n = Number(text);
  if (n < min || n > max) throw new ConfigError(`${what}: ${n} is out of range [${min}, ${max}]`);
  return n;
}
