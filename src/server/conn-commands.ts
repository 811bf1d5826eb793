// Connection and server commands (HELLO, CLIENT, INFO, CONFIG, COMMAND, ...): what clients
// send on connect, answered as Redis 7 answers them. They never touch the keyspace's log.
import type { CommandFlag, CommandSpec } from "../kv/command.ts";
import { globMatch } from "../kv/glob.ts";
import { utf8ToBytes, type ReplyWriter } from "../resp/encode.ts";
import type { ServerCommand, ServerCtx } from "./dispatch.ts";
import type { Conn } from "./server.ts";
import { assert } from "../errors.ts";
import pkg from "../../package.json" with { type: "json" };
import { allocatorDescription, gcHeapDescription } from "../allocator.ts";
import { sha256Hex } from "./acl.ts";
import { helloRole, infoRaftLines, infoReplicationLines, memberDownAfterMs } from "./cluster-commands.ts";
import { configGetPubsub, configSetPubsub, pubsubInfoLines } from "./pubsub-config.ts";
import { configSetTls, tlsConfigParams } from "./tls-commands.ts";

import { authCommand, login, NOAUTH_HELLO } from "./auth-commands.ts";

/** The Redis version kv reports: clients gate features on it. kv's own version is in INFO as kv_version. */
export const REDIS_COMPAT_VERSION = "7.2.0";

type Exec = (ctx: ServerCtx, argv: string[], out: ReplyWriter) => void;

/** A command with subcommands (CLIENT, CONFIG, COMMAND): dispatch resolves argv[1] among them. */
export type ContainerSpec = CommandSpec<ServerCtx> & { readonly subcommands?: readonly CommandSpec<ServerCtx>[] };

function spec(name: string, arity: number, flags: CommandFlag[], exec: Exec): CommandSpec<ServerCtx> {
  return { name, arity, flags: ["connection", "loading-ok", "noquorum-ok", ...flags], firstKey: 0, lastKey: 0, keyStep: 0, exec };
}

const upper = (s: string) => s.toUpperCase();

function wrongArgs(out: ReplyWriter, name: string): void {
  out.error(`ERR wrong number of arguments for '${name}' command`);
}

function helpReply(out: ReplyWriter, lines: string[]): void {
  out.array(lines.length);
  for (const l of lines) out.simple(l);
}

// ---- HELLO -------------------------------------------------------------------------------

function hello(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  const conn = ctx.conn;
  let proto = conn.proto;
  let i = 1;
  if (argv.length > 1) {
    const v = argv[1]!;
    if (!/^-?\d+$/.test(v)) {
      out.error("ERR Protocol version is not an integer or out of range");
      return;
    }
    const n = Number(v);
    if (n !== 2 && n !== 3) {
      out.error("NOPROTO unsupported protocol version");
      return;
    }
    proto = n;
    i = 2;
  }
  let setName: string | null = null;
  let authed = false;
  for (; i < argv.length; i++) {
    const opt = upper(argv[i]!);
    if (opt === "AUTH" && i + 2 < argv.length) {
      const err = login(ctx, argv[0]!, argv[i + 1]!, argv[i + 2]!);
      if (err !== null) {
        out.error(err);
        return;
      }
      authed = true;
      i += 2;
    } else if (opt === "SETNAME" && i + 1 < argv.length) {
      setName = argv[++i]!;
      if (!validClientName(setName)) {
        out.error("ERR Client names cannot contain spaces, newlines or special characters.");
        return;
      }
    } else {
      out.error(`ERR Syntax error in HELLO option '${argv[i]!}'`);
      return;
    }
  }
  if (!authed && !conn.authenticated) {
    out.error(NOAUTH_HELLO);
    return;
  }
  if (setName !== null) conn.name = setName === "" ? null : setName;
  conn.proto = proto;
  (out as { proto: 2 | 3 }).proto = proto;
  out.map(7);
  out.bulk("server");
  out.bulk("redis");
  out.bulk("version");
  out.bulk(REDIS_COMPAT_VERSION);
  out.bulk("proto");
  out.int(proto);
  out.bulk("id");
  out.int(conn.id);
  out.bulk("mode");
  out.bulk("cluster");
  out.bulk("role");
  out.bulk(helloRole(ctx.server.cluster));
  out.bulk("modules");
  out.array(0);
}

function validClientName(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 33 || c > 126) return false;
  }
  return true;
}

// ---- CLIENT ------------------------------------------------------------------------------

/** CLIENT NO-EVICT / NO-TOUCH modes a client turned on (flags e and T in CLIENT LIST; kv neither evicts nor tracks access). */
const clientModes = new WeakMap<Conn, { noEvict: boolean; noTouch: boolean }>();

function argvBytes(argv: readonly string[]): number {
  let n = 0;
  for (const a of argv) n += a.length;
  return n;
}

/**
 * One CLIENT LIST line, Redis 7.2's fields in its order, from the connection's state. Fields for
 * what kv does not have are constants: db=0 (one database), redir=-1 (no tracking).
 * `running` is the argv of the command being run, for the client that runs it.
 */
export function clientInfoLine(ctx: ServerCtx, c: Conn, running: readonly string[] | null): string {
  const now = ctx.nowMs;
  const age = Math.floor((now - c.createdAtMs) / 1000);
  const idle = Math.floor((now - c.lastActiveMs) / 1000);
  const modes = clientModes.get(c);
  const subs = c.subs;
  const txn = c.txn;
  const inMulti = txn !== null && txn.multi;
  // Redis's flag order: P (subscribed), x (in MULTI), then the rest.
  let flags = "";
  if (subscribed(c)) flags += "P";
  if (inMulti) flags += "x";
  if (c.closing) flags += "c";
  if (c.readOnly) flags += "r";
  if (modes?.noEvict) flags += "e";
  if (modes?.noTouch) flags += "T";
  if (flags === "") flags = "N";
  const sock = c.socket as unknown as { localAddress?: string; localPort?: number; fd?: number };
  const qbuf = c.parser.bufferedBytes();
  const qbufFree = c.parser.bufferFreeBytes();
  // Arguments held: the command running, commands waiting behind this client's unapplied writes,
  // and the arguments of a command still being received.
  let argvMem = (running === null ? 0 : argvBytes(running)) + c.parser.partialArgBytes();
  for (const p of c.pending) argvMem += p.kind === "write" ? argvBytes(p.proposal.argv) : p.kind === "queued" ? argvBytes(p.argv) : 0;
  // Replies of a read batch go to one buffer shared by all clients; a client's own buffer holds
  // the replies produced as its writes apply (rbs: its size, rbp: the most it held, obl: held now).
  const rbs = c.applyOut?.buf.length ?? 0;
  const rbp = c.applyOut === null ? 0 : Math.max(c.applyOut.peak, c.applyOut.len);
  const obl = c.applyOut?.len ?? 0;
  const reading = !(c.closing || c.inputClosed || c.pausedForOutput || c.pausedForPending || c.pausedForBarrier);
  const events = (reading ? "r" : "") + (c.queue.length > 0 ? "w" : "");
  return (
    `id=${c.id} addr=${c.addr} laddr=${sock.localAddress ?? ctx.server.config.host}:${sock.localPort ?? ctx.server.port} ` +
    `fd=${c.closed ? -1 : (sock.fd ?? -1)} name=${c.name ?? ""} age=${age} idle=${idle} flags=${flags} db=0 sub=${subs?.channels.size ?? 0} ` +
    `psub=${subs?.patterns.size ?? 0} ssub=${subs?.shard.size ?? 0} multi=${inMulti ? txn.queue.length : -1} qbuf=${qbuf} ` +
    `qbuf-free=${qbufFree} argv-mem=${argvMem} multi-mem=${inMulti ? txn.bytes : 0} rbs=${rbs} rbp=${rbp} obl=${obl} ` +
    `oll=${c.queue.length} omem=${c.queuedBytes} tot-mem=${qbuf + qbufFree + argvMem + rbs + c.queuedBytes} events=${events} ` +
    `cmd=${c.lastCommand === "" ? "NULL" : c.lastCommand} user=${c.user} redir=-1 resp=${c.proto} ` +
    `lib-name=${c.libName} lib-ver=${c.libVer}\n`
  );
}

/** A client in subscribed mode (channels, patterns, shard channels or KV.WATCH): Redis's type pubsub. */
function subscribed(c: Conn): boolean {
  return c.subs !== null && c.subs.active();
}

/** CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]: a subscribed client is of type pubsub, the others normal. */
function clientList(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  let type: string | null = null;
  let ids: Set<number> | null = null;
  for (let i = 2; i < argv.length; i++) {
    const opt = upper(argv[i]!);
    if (opt === "TYPE" && i + 1 < argv.length) {
      type = argv[++i]!.toLowerCase();
      if (!["normal", "master", "replica", "slave", "pubsub"].includes(type)) {
        out.error(`ERR Unknown client type '${argv[i]!}'`);
        return;
      }
    } else if (opt === "ID" && i + 1 < argv.length) {
      ids = new Set();
      for (i++; i < argv.length; i++) {
        if (!/^[1-9]\d{0,15}$/.test(argv[i]!)) {
          out.error("ERR Invalid client ID");
          return;
        }
        ids.add(Number(argv[i]!));
      }
    } else {
      out.error("ERR syntax error");
      return;
    }
  }
  let text = "";
  for (const c of ctx.server.conns.values()) {
    if (type !== null && type !== (subscribed(c) ? "pubsub" : "normal")) continue;
    if (ids === null || ids.has(c.id)) text += clientInfoLine(ctx, c, c === ctx.conn ? argv : null);
  }
  out.bulk(text);
}

function clientMode(mode: "noEvict" | "noTouch"): Exec {
  return (ctx, argv, out) => {
    const on = upper(argv[2]!);
    if (on !== "ON" && on !== "OFF") {
      out.error("ERR syntax error");
      return;
    }
    let m = clientModes.get(ctx.conn);
    if (m === undefined) clientModes.set(ctx.conn, (m = { noEvict: false, noTouch: false }));
    m[mode] = on === "ON";
    out.ok();
  };
}

const CLIENT_SUBCOMMANDS: CommandSpec<ServerCtx>[] = [
  spec("id", 2, [], (ctx, _argv, out) => out.int(ctx.conn.id)),
  spec("getname", 2, [], (ctx, _argv, out) => {
    if (ctx.conn.name === null) out.nil();
    else out.bulk(ctx.conn.name);
  }),
  spec("setname", 3, [], (ctx, argv, out) => {
    const name = argv[2]!;
    if (!validClientName(name)) {
      out.error("ERR Client names cannot contain spaces, newlines or special characters.");
      return;
    }
    ctx.conn.name = name === "" ? null : name;
    out.ok();
  }),
  spec("setinfo", 4, [], (ctx, argv, out) => {
    const attr = upper(argv[2]!);
    if (attr !== "LIB-NAME" && attr !== "LIB-VER") {
      out.error(`ERR Unrecognized option '${argv[2]!}'`);
      return;
    }
    // CLIENT LIST prints these unquoted: a space or newline would forge fields or lines.
    if (!validClientName(argv[3]!)) {
      out.error(`ERR ${attr.toLowerCase()} cannot contain spaces, newlines or special characters.`);
      return;
    }
    if (attr === "LIB-NAME") ctx.conn.libName = argv[3]!;
    else ctx.conn.libVer = argv[3]!;
    out.ok();
  }),
  spec("info", 2, [], (ctx, argv, out) => out.bulk(clientInfoLine(ctx, ctx.conn, argv))),
  spec("list", -2, ["admin"], clientList),
  spec("no-evict", 3, ["admin"], clientMode("noEvict")),
  spec("no-touch", 3, [], clientMode("noTouch")),
  spec("help", 2, [], (_ctx, _argv, out) =>
    helpReply(out, [
      "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
      "ID", "    Return the ID of the current connection.",
      "GETNAME", "    Return the name of the current connection.",
      "SETNAME <connection-name>", "    Assign the name <connection-name> to the current connection.",
      "SETINFO <LIB-NAME|LIB-VER> <value>", "    Set client library name or version.",
      "INFO", "    Return information about the current client connection.",
      "LIST [TYPE <type>] [ID <id> [<id> ...]]", "    Return information about client connections.",
      "NO-EVICT (ON|OFF)", "    Accepted; kv never evicts clients.",
      "NO-TOUCH (ON|OFF)", "    Accepted; kv keeps no access times.",
      "HELP", "    Print this help.",
    ]),
  ),
];

// ---- INFO --------------------------------------------------------------------------------

/**
 * Redis 7's sections kv has, in Redis's order, then kv's own `raft` (where a module's sections
 * would go); commandstats is the one not in the default set.
 */
const INFO_SECTIONS = ["server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules", "commandstats", "errorstats", "cluster", "keyspace", "raft"] as const;
type InfoSection = (typeof INFO_SECTIONS)[number];
const DEFAULT_SECTIONS: readonly InfoSection[] = INFO_SECTIONS.filter((s) => s !== "commandstats");
const INFO_TITLES: Record<InfoSection, string> = {
  server: "Server", clients: "Clients", memory: "Memory", persistence: "Persistence", stats: "Stats",
  replication: "Replication", cpu: "CPU", modules: "Modules", commandstats: "Commandstats",
  errorstats: "Errorstats", cluster: "Cluster", keyspace: "Keyspace", raft: "Raft",
};

/** Keys with a TTL looked at for avg_ttl: exact up to this many, an estimate from the oldest ones past it. */
export const AVG_TTL_SAMPLE_KEYS = 10_000;

/** This process's run id: 40 random hex digits, new at every start, as Redis's (clients detect restarts with it). */
const RUN_ID = Array.from(crypto.getRandomValues(new Uint8Array(20)), (b) => b.toString(16).padStart(2, "0")).join("");

/**
 * LASTSAVE and rdb_last_save_time: the last snapshot written, or the start (as Redis: recovery
 * leaves everything it loaded on disk, so at startup the data counts as saved).
 */
function lastSaveSeconds(ctx: ServerCtx): number {
  const d = ctx.server.node;
  return Math.floor((d.lastSnapshotAtMs === 0 ? ctx.server.stats.startedAtMs : d.lastSnapshotAtMs) / 1000);
}

function infoSection(ctx: ServerCtx, section: InfoSection): string {
  const s = ctx.server;
  const lines: string[] = [];
  switch (section) {
    case "server":
      lines.push(
        `redis_version:${REDIS_COMPAT_VERSION}`,
        `kv_version:${pkg.version}`,
        "redis_mode:cluster",
        `os:${process.platform} ${process.arch}`,
        `process_id:${process.pid}`,
        `run_id:${RUN_ID}`,
        `node_id:${s.config.id}`,
        `tcp_port:${s.port}`,
        `uptime_in_seconds:${Math.floor((ctx.nowMs - s.stats.startedAtMs) / 1000)}`,
        `executable:${process.execPath}`,
      );
      break;
    case "clients":
      // kv has no blocking commands: no client is ever blocked.
      lines.push(`connected_clients:${s.conns.size}`, `maxclients:${s.config.maxClients}`, "blocked_clients:0");
      break;
    case "memory": {
      const m = process.memoryUsage();
      lines.push(
        `used_memory:${m.heapUsed}`,
        `used_memory_rss:${m.rss}`,
        `used_memory_human:${(m.heapUsed / 1048576).toFixed(2)}M`,
        `mem_allocator:${allocatorDescription()}`,
        `kv_gc_heap:${gcHeapDescription()}`,
      );
      break;
    }
    case "persistence": {
      const d = s.node;
      const w = d.walStats;
      lines.push(
        // Clients connect only once recovery is done: nobody can see kv loading.
        "loading:0",
        // Redis's rdb_* fields describe kv's snapshots (SAVE, BGSAVE and the background ones).
        `rdb_changes_since_last_save:${d.changesSinceSnapshot}`,
        `rdb_bgsave_in_progress:${d.snapshotInProgress ? 1 : 0}`,
        `rdb_last_save_time:${lastSaveSeconds(ctx)}`,
        `rdb_last_bgsave_status:${d.lastSnapshotStatus}`,
        `rdb_last_bgsave_time_sec:${d.lastSnapshotAttemptSec}`,
        `aof_enabled:1`,
        // As Redis's aof_last_write_status: err once a write to the log failed (writes are refused until a restart).
        `aof_last_write_status:${s.node?.storageFailed === undefined ? "ok" : "err"}`,
        ...(s.node?.storageFailed === undefined ? [] : [`kv_log_error:${s.node.storageFailed.message.replace(/[\r\n]+/g, " ")}`]),
        `kv_fsync:${s.config.fsync}`,
        `kv_pending_writes_bytes:${d.pendingBytes}`,
        `kv_pending_writes_limit:${s.config.pendingWritesLimit}`,
        `kv_pending_writes_paused_clients:${s.pendingWritesWaiters.size}`,
        `kv_pending_writes_pauses:${s.stats.pendingWritesPauses}`,
        `kv_applied_index:${d.applied}`,
        `kv_wal_batches:${w.batches}`,
        `kv_wal_fsyncs:${w.fsyncs}`,
        `kv_wal_records:${w.records}`,
        `kv_last_snapshot_index:${d.lastSnapshot?.lastIndex ?? d.recovery.snapshotIndex}`,
        // -1: no snapshot written since the node started.
        `kv_last_snapshot_ms:${d.lastSnapshot?.durationMs ?? -1}`,
        `kv_last_snapshot_longest_slice_ms:${d.lastSnapshot?.longestSliceMs.toFixed(2) ?? -1}`,
        `kv_recovery_ms:${d.recovery.durationMs}`,
        ...(d.lastSnapshotError === null ? [] : [`kv_last_snapshot_error:${d.lastSnapshotError.replace(/[\r\n]+/g, " ")}`]),
        `kv_values_mapped:${s.db.hasLazyValues() ? 1 : 0}`,
      );
      break;
    }
    case "stats":
      lines.push(
        `total_connections_received:${s.stats.connectionsReceived}`,
        `total_commands_processed:${s.stats.commandsProcessed}`,
        `rejected_connections:${s.stats.connectionsRejected}`,
        `total_error_replies:${s.dispatcher.stats.errorReplies}`,
        `protocol_errors:${s.stats.protocolErrors}`,
        `client_output_buffer_limit_disconnections:${s.stats.outputLimitDisconnections}`,
        `kv_idle_collections:${s.stats.idleCollections}`,
        ...pubsubInfoLines(s),
        `acl_access_denied_auth:${s.acl.stats.deniedAuth}`,
        `acl_access_denied_cmd:${s.acl.stats.deniedCmd}`,
        `acl_access_denied_key:${s.acl.stats.deniedKey}`,
        `acl_access_denied_channel:${s.acl.stats.deniedChannel}`,
        `kv_auth_rate_limited:${s.acl.stats.authRateLimited}`,
      );
      break;
    case "replication":
      lines.push(...infoReplicationLines(s.cluster, memberDownAfterMs(s.config)));
      break;
    case "cpu": {
      const u = process.cpuUsage();
      lines.push(`used_cpu_sys:${(u.system / 1e6).toFixed(6)}`, `used_cpu_user:${(u.user / 1e6).toFixed(6)}`);
      break;
    }
    case "modules":
      break; // kv loads no modules
    case "commandstats": {
      const stats = s.dispatcher.stats.commands;
      for (const c of s.dispatcher.withSubcommands) {
        const st = stats[c.id]!;
        if (st.calls === 0 && st.rejected === 0 && st.failed === 0) continue;
        const usecPerCall = st.calls === 0 ? 0 : st.usec / st.calls;
        lines.push(
          `cmdstat_${c.fullName}:calls=${st.calls},usec=${Math.floor(st.usec)},usec_per_call=${usecPerCall.toFixed(2)},` +
            `rejected_calls=${st.rejected},failed_calls=${st.failed}`,
        );
      }
      break;
    }
    case "errorstats": {
      const errors = [...s.dispatcher.stats.errors].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      for (const [prefix, count] of errors) lines.push(`errorstat_${prefix}:count=${count}`);
      break;
    }
    case "cluster":
      // CLUSTER SLOTS and friends answer (the group is one shard): see cluster-commands.ts.
      lines.push("cluster_enabled:1");
      break;
    case "keyspace": {
      const keys = s.db.dbsize();
      if (keys > 0) lines.push(`db0:keys=${keys},expires=${s.db.expiresCount()},avg_ttl=${s.db.avgTtlMs(ctx.nowMs, AVG_TTL_SAMPLE_KEYS)}`);
      break;
    }
    case "raft":
      lines.push(...infoRaftLines(s.cluster));
      break;
  }
  return `# ${INFO_TITLES[section]}\r\n${lines.map((l) => l + "\r\n").join("")}`;
}

/** INFO [section ...]: sections in Redis's order; `default` (or none) the default ones, `all` and `everything` every one. */
function info(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  const wanted = new Set<string>();
  let all = false;
  if (argv.length === 1) for (const sec of DEFAULT_SECTIONS) wanted.add(sec);
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!.toLowerCase();
    if (a === "all" || a === "everything") all = true;
    else if (a === "default") for (const sec of DEFAULT_SECTIONS) wanted.add(sec);
    else wanted.add(a === "module_list" ? "modules" : a);
  }
  const sections = INFO_SECTIONS.filter((sec) => all || wanted.has(sec));
  out.bulk(utf8ToBytes(sections.map((sec) => infoSection(ctx, sec)).join("\r\n")));
}

// ---- CONFIG ------------------------------------------------------------------------------

function configParams(ctx: ServerCtx): [string, string][] {
  const c = ctx.server.config;
  return [
    ["bind", c.host],
    ["port", String(ctx.server.port)],
    ["dir", c.dataDir],
    ["maxclients", String(c.maxClients)],
    ["proto-max-bulk-len", String(c.limits.protoMaxBulkLen)],
    ["client-query-buffer-limit", String(c.limits.queryBufferBytesMax)],
    ["client-output-buffer-limit", `normal ${c.clientOutputBufferLimit} 0 0 pubsub ${c.pubsubOutputLimit.hardBytes} ${c.pubsubOutputLimit.softBytes} ${c.pubsubOutputLimit.softSeconds}`],
    ...configGetPubsub(ctx.server),
    ["pending-writes-limit", String(c.pendingWritesLimit)],
    ["shutdown-timeout", String(Math.ceil(c.shutdownTimeoutMs / 1000))],
    ["databases", "1"],
    ["timeout", "0"],
    // Persistence is kv's write-ahead log (always on), the closest thing to Redis's AOF;
    // snapshots are triggered by log growth, not by RDB save points.
    ["save", ""],
    ["appendonly", "yes"],
    ["appendfsync", c.fsync],
    ...tlsConfigParams(ctx.server.tls, ctx.server.tlsPort),
    // The password itself is never shown: its SHA-256 as ACL LIST writes it (empty when unset, as Redis).
    ["requirepass", c.requirepass === undefined ? "" : `#${sha256Hex(c.requirepass)}`],
    ["aclfile", c.aclFile ?? ""],
    ["protected-mode", c.protectedMode ? "yes" : "no"],
    ["masteruser", c.masterUser ?? ""],
    ["masterauth", c.masterAuth === undefined ? "" : `#${sha256Hex(c.masterAuth)}`],
  ];
}

const CONFIG_SUBCOMMANDS: CommandSpec<ServerCtx>[] = [
  spec("get", -3, ["admin"], (ctx, argv, out) => {
    const patterns = argv.slice(2).map((p) => p.toLowerCase());
    const hits = configParams(ctx).filter(([name]) => patterns.some((p) => globMatch(p, name)));
    out.map(hits.length);
    for (const [k, v] of hits) {
      out.bulk(k);
      out.bulk(v);
    }
  }),
  spec("set", -4, ["admin"], (ctx, argv, out) => {
    // notify-keyspace-events and client-output-buffer-limit (its pubsub class) change at run time, on this node.
    if (configSetPubsub(ctx.server, argv, out)) return;
    if (configSetTls(ctx, argv, out)) return;
    out.error("ERR CONFIG SET is not supported by kv: restart with the matching flag (see kv serve --help)");
  }),
  spec("resetstat", 2, ["admin"], (ctx, _argv, out) => {
    const st = ctx.server.stats;
    st.commandsProcessed = 0;
    st.connectionsReceived = 0;
    st.connectionsRejected = 0;
    st.protocolErrors = 0;
    st.outputLimitDisconnections = 0;
    st.pendingWritesPauses = 0;
    ctx.server.dispatcher.stats.reset();
    out.ok();
  }),
  spec("help", 2, [], (_ctx, _argv, out) =>
    helpReply(out, [
      "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
      "GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
      "RESETSTAT", "    Reset statistics reported by the INFO command.",
      "HELP", "    Print this help.",
    ]),
  ),
];

// ---- COMMAND -----------------------------------------------------------------------------

function commandInfo(out: ReplyWriter, s: ServerCommand): void {
  out.array(10);
  out.bulk(s.fullName);
  out.int(s.arity);
  out.set(s.flags.length);
  for (const f of s.flags) out.simple(f);
  out.int(s.firstKey);
  out.int(s.lastKey);
  out.int(s.keyStep);
  out.set(s.categories.length);
  for (const c of s.categories) out.simple(c);
  out.array(0); // tips
  out.array(0); // key specs
  out.array(s.subcommands.length);
  for (const sub of s.subcommands) commandInfo(out, sub);
}

/** COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern], as Redis 7: commands and subcommands. */
function commandList(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  let keep: (c: ServerCommand) => boolean = () => true;
  if (argv.length !== 2) {
    const by = argv.length === 5 && upper(argv[2]!) === "FILTERBY" ? upper(argv[3]!) : "";
    const arg = argv[4]!;
    if (by === "MODULE") keep = () => false; // kv loads no modules
    else if (by === "ACLCAT") {
      const cat = `@${arg.toLowerCase()}`;
      keep = (c) => c.categories.includes(cat);
    } else if (by === "PATTERN") keep = (c) => globMatch(arg.toLowerCase(), c.fullName);
    else {
      out.error("ERR syntax error");
      return;
    }
  }
  const hits = ctx.server.dispatcher.withSubcommands.filter(keep);
  out.array(hits.length);
  for (const c of hits) out.bulk(c.fullName);
}

const COMMAND_SUBCOMMANDS: CommandSpec<ServerCtx>[] = [
  spec("count", 2, [], (ctx, _argv, out) => out.int(ctx.server.dispatcher.commands.length)),
  spec("list", -2, [], commandList),
  spec("info", -2, [], (ctx, argv, out) => {
    const d = ctx.server.dispatcher;
    const list = argv.length === 2 ? d.commands : argv.slice(2).map((n) => d.lookupFullName(n));
    out.array(list.length);
    for (const s of list) {
      if (s === undefined) out.nilArray();
      else commandInfo(out, s);
    }
  }),
  // COMMAND DOCS is not implemented on purpose: redis-cli falls back to its built-in hints
  // when it errors, while an empty reply would turn hints off.
  spec("help", 2, [], (_ctx, _argv, out) =>
    helpReply(out, [
      "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
      "(no subcommand)", "    Return details about all commands.",
      "COUNT", "    Return the total number of commands in this server.",
      "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]", "    Return a list of all commands in this server.",
      "INFO [<command-name> ...]", "    Return details about multiple commands. With no names, all commands.",
      "HELP", "    Print this help.",
    ]),
  ),
];

function container(name: string, arity: number, flags: CommandFlag[], subcommands: CommandSpec<ServerCtx>[], exec: Exec): ContainerSpec {
  return { ...spec(name, arity, flags, exec), subcommands };
}

/** CLIENT and CONFIG always name a subcommand (arity -2): dispatch runs the subcommand, never this. */
const subcommandOnly: Exec = () => assert(false, "a container command ran without its subcommand");

// ---- the table ---------------------------------------------------------------------------

export const CONN_COMMANDS: readonly ContainerSpec[] = [
  spec("ping", -1, ["fast"], (ctx, argv, out) => {
    if (argv.length > 2) return wrongArgs(out, "ping");
    if (ctx.conn.proto === 2 && ctx.conn.subs?.active()) {
      // Subscribed mode, RESP2: a push-shaped pong (Redis's pingCommand).
      out.array(2);
      out.bulk("pong");
      out.bulk(argv.length === 2 ? argv[1]! : "");
    } else if (argv.length === 2) out.bulk(argv[1]!);
    else out.simple("PONG");
  }),
  spec("echo", 2, ["fast"], (_ctx, argv, out) => out.bulk(argv[1]!)),
  spec("quit", -1, ["fast"], (ctx, _argv, out) => {
    out.ok();
    ctx.server.closeAfterReply(ctx.conn);
  }),
  spec("reset", 1, ["fast"], (ctx, _argv, out) => {
    ctx.conn.proto = 2;
    ctx.conn.name = null;
    ctx.conn.readOnly = false; // as Redis: READWRITE
    ctx.conn.txn = null; // as Redis: no transaction, no watched keys
    ctx.server.pubsub.dropConn(ctx.conn); // as Redis: unsubscribed from everything
    ctx.server.acl.initConn(ctx.conn); // as Redis: back to the default user, authenticated only if it needs no password
    clientModes.delete(ctx.conn);
    (out as { proto: 2 | 3 }).proto = 2;
    out.simple("RESET");
  }),
  spec("hello", -1, ["fast"], hello),
  spec("auth", -2, ["fast"], (ctx, argv, out) => authCommand(ctx, argv, out)),
  spec("select", 2, ["fast"], (_ctx, argv, out) => {
    const v = argv[1]!;
    if (!/^-?\d+$/.test(v)) out.error("ERR value is not an integer or out of range");
    else if (Number(v) !== 0) out.error("ERR DB index is out of range");
    else out.ok();
  }),
  container("client", -2, [], CLIENT_SUBCOMMANDS, subcommandOnly),
  spec("info", -1, [], info),
  container("config", -2, [], CONFIG_SUBCOMMANDS, subcommandOnly),
  container("command", -1, [], COMMAND_SUBCOMMANDS, (ctx, _argv, out) => {
    const all = ctx.server.dispatcher.commands;
    out.array(all.length);
    for (const s of all) commandInfo(out, s);
  }),
  // SAVE answers once the snapshot is on disk (the server keeps serving meanwhile, unlike
  // Redis's blocking SAVE); BGSAVE answers at once.
  spec("save", 1, ["admin"], (ctx, _argv, _out) => {
    const settle = ctx.server.defer(ctx.conn);
    ctx.server.node.snapshot().then(
      () => settle((out) => out.ok()),
      (e: Error) => settle((out) => ctx.server.dispatcher.failedLater("save", out, `ERR snapshot failed: ${e.message}`)),
    );
  }),
  spec("bgsave", -1, ["admin"], (ctx, _argv, out) => {
    if (ctx.server.node.snapshotInProgress) {
      out.error("ERR Background save already in progress");
      return;
    }
    void ctx.server.node.snapshot().catch(() => {}); // logged and shown in INFO persistence by snapshot()
    out.simple("Background saving started");
  }),
  spec("lastsave", 1, ["fast"], (ctx, _argv, out) => {
    out.int(lastSaveSeconds(ctx));
  }),
  spec("time", 1, ["fast"], (ctx, _argv, out) => {
    out.array(2);
    out.bulk(String(Math.floor(ctx.nowMs / 1000)));
    out.bulk(String((ctx.nowMs % 1000) * 1000));
  }),
];
