// Connection and server commands (HELLO, CLIENT, INFO, CONFIG, COMMAND, ...): what clients
// send on connect, answered as Redis 7 answers them. They never touch the keyspace's log.
import type { CommandFlag, CommandSpec } from "../kv/command.ts";
import { globMatch } from "../kv/glob.ts";
import { utf8ToBytes, type ReplyWriter } from "../resp/encode.ts";
import type { ServerCtx } from "./dispatch.ts";
import pkg from "../../package.json" with { type: "json" };
import { allocatorDescription, gcHeapDescription } from "../allocator.ts";

const WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled.";

/** The Redis version kv reports: clients gate features on it. kv's own version is in INFO as kv_version. */
export const REDIS_COMPAT_VERSION = "7.2.0";

type Exec = (ctx: ServerCtx, argv: string[], out: ReplyWriter) => void;

function spec(name: string, arity: number, flags: CommandFlag[], exec: Exec): CommandSpec<ServerCtx> {
  return { name, arity, flags: ["connection", "loading-ok", "noquorum-ok", ...flags], firstKey: 0, lastKey: 0, keyStep: 0, exec };
}

const upper = (s: string) => s.toUpperCase();

function wrongArgs(out: ReplyWriter, name: string): void {
  out.error(`ERR wrong number of arguments for '${name}' command`);
}

function unknownSubcommand(out: ReplyWriter, cmd: string, sub: string): void {
  out.error(`ERR unknown subcommand '${sub.slice(0, 128)}'. Try ${cmd} HELP.`);
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
  for (; i < argv.length; i++) {
    const opt = upper(argv[i]!);
    if (opt === "AUTH" && i + 2 < argv.length) {
      // No ACLs yet: as a Redis whose only user, "default", has no password.
      if (argv[i + 1] !== "default") {
        out.error(WRONGPASS);
        return;
      }
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
  out.bulk("standalone");
  out.bulk("role");
  out.bulk("master");
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

function clientInfoLine(ctx: ServerCtx, c: ServerCtx["conn"]): string {
  const now = ctx.nowMs;
  const age = Math.floor((now - c.createdAtMs) / 1000);
  const idle = Math.floor((now - c.lastActiveMs) / 1000);
  return (
    `id=${c.id} addr=${c.addr} laddr=${ctx.server.config.host}:${ctx.server.port} name=${c.name ?? ""} ` +
    `age=${age} idle=${idle} flags=N db=0 qbuf=${c.parser.bufferedBytes()} omem=${c.queuedBytes} ` +
    `resp=${c.proto} lib-name=${c.libName} lib-ver=${c.libVer} cmd=${c.lastCommand}\n`
  );
}

function client(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  const sub = upper(argv[1]!);
  const conn = ctx.conn;
  switch (sub) {
    case "ID":
      if (argv.length !== 2) return wrongArgs(out, "client|id");
      out.int(conn.id);
      return;
    case "GETNAME":
      if (argv.length !== 2) return wrongArgs(out, "client|getname");
      if (conn.name === null) out.nil();
      else out.bulk(conn.name);
      return;
    case "SETNAME": {
      if (argv.length !== 3) return wrongArgs(out, "client|setname");
      const name = argv[2]!;
      if (!validClientName(name)) {
        out.error("ERR Client names cannot contain spaces, newlines or special characters.");
        return;
      }
      conn.name = name === "" ? null : name;
      out.ok();
      return;
    }
    case "SETINFO": {
      if (argv.length !== 4) return wrongArgs(out, "client|setinfo");
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
      if (attr === "LIB-NAME") conn.libName = argv[3]!;
      else conn.libVer = argv[3]!;
      out.ok();
      return;
    }
    case "INFO":
      if (argv.length !== 2) return wrongArgs(out, "client|info");
      out.bulk(clientInfoLine(ctx, conn));
      return;
    case "LIST": {
      let text = "";
      for (const c of ctx.server.conns.values()) text += clientInfoLine(ctx, c);
      out.bulk(text);
      return;
    }
    case "NO-EVICT":
    case "NO-TOUCH":
      if (argv.length !== 3) return wrongArgs(out, `client|${sub.toLowerCase()}`);
      out.ok();
      return;
    case "HELP":
      helpReply(out, [
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ID", "    Return the ID of the current connection.",
        "GETNAME", "    Return the name of the current connection.",
        "SETNAME <connection-name>", "    Assign the name <connection-name> to the current connection.",
        "SETINFO <LIB-NAME|LIB-VER> <value>", "    Set client library name or version.",
        "INFO", "    Return information about the current client connection.",
        "LIST", "    Return information about client connections.",
        "HELP", "    Print this help.",
      ]);
      return;
    default:
      unknownSubcommand(out, "CLIENT", argv[1]!);
  }
}

// ---- INFO --------------------------------------------------------------------------------

const INFO_SECTIONS = ["server", "clients", "memory", "persistence", "stats", "replication", "cpu", "keyspace"] as const;
type InfoSection = (typeof INFO_SECTIONS)[number];

function infoSection(ctx: ServerCtx, section: InfoSection): string {
  const s = ctx.server;
  const lines: string[] = [];
  switch (section) {
    case "server":
      lines.push(
        `redis_version:${REDIS_COMPAT_VERSION}`,
        `kv_version:${pkg.version}`,
        "redis_mode:standalone",
        `os:${process.platform} ${process.arch}`,
        `process_id:${process.pid}`,
        `run_id:kv-node-${s.config.id}`,
        `node_id:${s.config.id}`,
        `tcp_port:${s.port}`,
        `uptime_in_seconds:${Math.floor((ctx.nowMs - s.stats.startedAtMs) / 1000)}`,
        `executable:${process.execPath}`,
      );
      break;
    case "clients":
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
      const d = s.durable;
      const w = d.walStats;
      lines.push(
        "loading:0",
        `rdb_bgsave_in_progress:${d.snapshotInProgress ? 1 : 0}`,
        `rdb_last_save_time:${Math.floor(d.lastSnapshotAtMs / 1000)}`,
        `aof_enabled:1`,
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
        `kv_last_snapshot_ms:${d.lastSnapshot?.durationMs ?? 0}`,
        `kv_last_snapshot_longest_slice_ms:${d.lastSnapshot?.longestSliceMs.toFixed(2) ?? 0}`,
        `kv_recovery_ms:${d.recovery.durationMs}`,
        `kv_values_mapped:${s.db.hasLazyValues() ? 1 : 0}`,
      );
      break;
    }
    case "stats":
      lines.push(
        `total_connections_received:${s.stats.connectionsReceived}`,
        `total_commands_processed:${s.stats.commandsProcessed}`,
        `rejected_connections:${s.stats.connectionsRejected}`,
        `total_error_replies:0`,
        `protocol_errors:${s.stats.protocolErrors}`,
        `client_output_buffer_limit_disconnections:${s.stats.outputLimitDisconnections}`,
        `kv_idle_collections:${s.stats.idleCollections}`,
      );
      break;
    case "replication":
      lines.push("role:master", "connected_slaves:0");
      break;
    case "cpu": {
      const u = process.cpuUsage();
      lines.push(`used_cpu_sys:${(u.system / 1e6).toFixed(6)}`, `used_cpu_user:${(u.user / 1e6).toFixed(6)}`);
      break;
    }
    case "keyspace": {
      const keys = s.db.dbsize();
      if (keys > 0) lines.push(`db0:keys=${keys},expires=${s.db.expiresCount()},avg_ttl=0`);
      break;
    }
  }
  const title = section === "cpu" ? "CPU" : section[0]!.toUpperCase() + section.slice(1);
  return `# ${title}\r\n${lines.map((l) => l + "\r\n").join("")}`;
}

function info(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  let wanted: InfoSection[];
  const asked = argv.slice(1).map((a) => a.toLowerCase());
  if (asked.length === 0 || asked.some((a) => a === "all" || a === "everything" || a === "default")) {
    wanted = [...INFO_SECTIONS];
  } else {
    wanted = INFO_SECTIONS.filter((sec) => asked.includes(sec));
  }
  out.bulk(utf8ToBytes(wanted.map((sec) => infoSection(ctx, sec)).join("\r\n")));
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
    ["client-output-buffer-limit", `normal ${c.clientOutputBufferLimit} 0 0`],
    ["pending-writes-limit", String(c.pendingWritesLimit)],
    ["shutdown-timeout", String(Math.ceil(c.shutdownTimeoutMs / 1000))],
    ["databases", "1"],
    ["timeout", "0"],
    // Persistence is kv's write-ahead log (always on), the closest thing to Redis's AOF;
    // snapshots are triggered by log growth, not by RDB save points.
    ["save", ""],
    ["appendonly", "yes"],
    ["appendfsync", c.fsync],
  ];
}

function config(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  const sub = upper(argv[1]!);
  switch (sub) {
    case "GET": {
      if (argv.length < 3) return wrongArgs(out, "config|get");
      const patterns = argv.slice(2).map((p) => p.toLowerCase());
      const hits = configParams(ctx).filter(([name]) => patterns.some((p) => globMatch(p, name)));
      out.map(hits.length);
      for (const [k, v] of hits) {
        out.bulk(k);
        out.bulk(v);
      }
      return;
    }
    case "SET":
      out.error("ERR CONFIG SET is not supported by kv: restart with the matching flag (see kv serve --help)");
      return;
    case "RESETSTAT":
      ctx.server.stats.commandsProcessed = 0;
      ctx.server.stats.connectionsReceived = 0;
      ctx.server.stats.connectionsRejected = 0;
      ctx.server.stats.protocolErrors = 0;
      ctx.server.stats.outputLimitDisconnections = 0;
      ctx.server.stats.pendingWritesPauses = 0;
      out.ok();
      return;
    case "HELP":
      helpReply(out, ["CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:", "GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.", "RESETSTAT", "    Reset statistics reported by the INFO command.", "HELP", "    Print this help."]);
      return;
    default:
      unknownSubcommand(out, "CONFIG", argv[1]!);
  }
}

// ---- COMMAND -----------------------------------------------------------------------------

function commandInfo(out: ReplyWriter, s: CommandSpec<ServerCtx>): void {
  out.array(10);
  out.bulk(s.name);
  out.int(s.arity);
  out.set(s.flags.length);
  for (const f of s.flags) out.simple(f);
  out.int(s.firstKey);
  out.int(s.lastKey);
  out.int(s.keyStep);
  out.set(0); // ACL categories
  out.array(0); // tips
  out.array(0); // key specs
  out.array(0); // subcommands
}

function command(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  const all = ctx.server.dispatcher.commands;
  if (argv.length === 1) {
    out.array(all.length);
    for (const s of all) commandInfo(out, s);
    return;
  }
  const sub = upper(argv[1]!);
  switch (sub) {
    case "COUNT":
      out.int(all.length);
      return;
    case "LIST":
      out.array(all.length);
      for (const s of all) out.bulk(s.name);
      return;
    case "INFO": {
      const names = argv.slice(2);
      const list = names.length === 0 ? all : names.map((n) => all.find((s) => s.name === n.toLowerCase()));
      out.array(list.length);
      for (const s of list) {
        if (s === undefined) out.nilArray();
        else commandInfo(out, s);
      }
      return;
    }
    // COMMAND DOCS is not implemented on purpose: redis-cli falls back to its built-in hints
    // when it errors, while an empty reply would turn hints off.
    default:
      unknownSubcommand(out, "COMMAND", argv[1]!);
  }
}

// ---- the table ---------------------------------------------------------------------------

export const CONN_COMMANDS: readonly CommandSpec<ServerCtx>[] = [
  spec("ping", -1, ["fast"], (ctx, argv, out) => {
    if (argv.length > 2) return wrongArgs(out, "ping");
    if (argv.length === 2) out.bulk(argv[1]!);
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
    (out as { proto: 2 | 3 }).proto = 2;
    out.simple("RESET");
  }),
  spec("hello", -1, ["fast"], hello),
  spec("auth", -2, ["fast"], (_ctx, argv, out) => {
    if (argv.length > 3) {
      out.error("ERR syntax error");
      return;
    }
    // As a Redis whose only user, "default", has no password: AUTH default <anything> succeeds.
    if (argv.length === 3) {
      if (argv[1] === "default") out.ok();
      else out.error(WRONGPASS);
      return;
    }
    out.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
  }),
  spec("select", 2, ["fast"], (_ctx, argv, out) => {
    const v = argv[1]!;
    if (!/^-?\d+$/.test(v)) out.error("ERR value is not an integer or out of range");
    else if (Number(v) !== 0) out.error("ERR DB index is out of range");
    else out.ok();
  }),
  spec("client", -2, [], client),
  spec("info", -1, [], info),
  spec("config", -2, ["admin"], config),
  spec("command", -1, [], command),
  // SAVE answers once the snapshot is on disk (the server keeps serving meanwhile, unlike
  // Redis's blocking SAVE); BGSAVE answers at once.
  spec("save", 1, ["admin"], (ctx, _argv, _out) => {
    const settle = ctx.server.defer(ctx.conn);
    ctx.server.durable.snapshot().then(
      () => settle((out) => out.ok()),
      (e: Error) => settle((out) => out.error(`ERR snapshot failed: ${e.message}`)),
    );
  }),
  spec("bgsave", -1, ["admin"], (ctx, _argv, out) => {
    if (ctx.server.durable.snapshotInProgress) {
      out.error("ERR Background save already in progress");
      return;
    }
    void ctx.server.durable.snapshot().catch(() => {});
    out.simple("Background saving started");
  }),
  spec("lastsave", 1, ["fast"], (ctx, _argv, out) => {
    out.int(Math.floor(ctx.server.durable.lastSnapshotAtMs / 1000));
  }),
  spec("time", 1, ["fast"], (ctx, _argv, out) => {
    out.array(2);
    out.bulk(String(Math.floor(ctx.nowMs / 1000)));
    out.bulk(String((ctx.nowMs % 1000) * 1000));
  }),
];
