// The server's command path without sockets: a KvServer over a one-member group, clients as fake
// sockets fed through the parser. INFO commandstats / errorstats / total_error_replies, CLIENT
// LIST and COMMAND LIST after known sequences, with exact counts.
import { afterAll, describe, expect, test } from "bun:test";
import { DEFAULT_CONFIG } from "../../src/config.ts";
import { ErrorReply, NEED_MORE, ReplyParser, type RespValue } from "../../src/resp/reply-parser.ts";
import { encodeCommand } from "../../src/resp/request-parser.ts";
import { ACL_CATEGORIES, ACL_CATEGORY_NAMES } from "../../src/server/acl-categories.ts";
import { ALL_COMMANDS } from "../../src/server/dispatch.ts";
import { Conn, KvServer } from "../../src/server/server.ts";
import { ERROR_PREFIXES_MAX, ReplyStats, errorPrefix } from "../../src/server/stats.ts";
import { RecordingIo } from "../../src/storage/testing.ts";
import { openOneMember } from "../helpers/one-member.ts";
import { tempDirs } from "../helpers/tmp.ts";

const tempDir = tempDirs("kv-stats-");
const servers: KvServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.node.close();
});

async function openServer(io?: RecordingIo): Promise<KvServer> {
  const dir = tempDir();
  const { node } = await openOneMember<Conn>({ dataDir: dir, io });
  const server = new KvServer({ ...DEFAULT_CONFIG, port: 0, dataDir: dir }, node);
  servers.push(server);
  return server;
}

interface FakeClient {
  conn: Conn;
  /** Sends commands and waits for one reply each. */
  call(...commands: string[][]): Promise<RespValue[]>;
}

let nextId = 1;
function connect(server: KvServer): FakeClient {
  const parser = new ReplyParser();
  const replies: RespValue[] = [];
  const id = nextId++;
  const socket = {
    remoteAddress: "127.0.0.1",
    remotePort: 40000 + id,
    localAddress: "127.0.0.1",
    localPort: 6379,
    fd: 100 + id,
    data: undefined as unknown as Conn,
    write(b: Uint8Array) {
      parser.push(Buffer.from(b));
      for (let v = parser.next("latin1"); v !== NEED_MORE; v = parser.next("latin1")) replies.push(v);
      return b.length;
    },
    pause() {},
    resume() {},
    shutdown() {},
    end() {},
    terminate() {},
  };
  const conn = new Conn(id, socket as never, server, Date.now());
  socket.data = conn;
  server.conns.set(id, conn);
  return {
    conn,
    async call(...commands) {
      const want = replies.length + commands.length;
      conn.parser.push(Buffer.concat(commands.map((c) => encodeCommand(c))));
      server.process(conn);
      for (let i = 0; i < 1000 && replies.length < want; i++) await Bun.sleep(2);
      expect(replies.length).toBe(want);
      return replies.slice(want - commands.length);
    },
  };
}

async function info(c: FakeClient, ...sections: string[]): Promise<Map<string, string>> {
  const [text] = await c.call(["INFO", ...sections]);
  const fields = new Map<string, string>();
  for (const line of String(text).split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) fields.set(line.slice(0, i), line.slice(i + 1));
  }
  return fields;
}

/** calls=N,usec=N,usec_per_call=F,rejected_calls=N,failed_calls=N -> its numbers. */
function cmdstat(fields: Map<string, string>, name: string): { calls: number; usec: number; perCall: number; rejected: number; failed: number } | undefined {
  const v = fields.get(`cmdstat_${name}`);
  if (v === undefined) return undefined;
  const m = /^calls=(\d+),usec=(\d+),usec_per_call=(\d+\.\d\d),rejected_calls=(\d+),failed_calls=(\d+)$/.exec(v);
  expect(m).not.toBeNull();
  return { calls: Number(m![1]), usec: Number(m![2]), perCall: Number(m![3]), rejected: Number(m![4]), failed: Number(m![5]) };
}

function errorstats(fields: Map<string, string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of fields) if (k.startsWith("errorstat_")) out[k.slice("errorstat_".length)] = Number(/^count=(\d+)$/.exec(v)![1]);
  return out;
}

describe("INFO commandstats, errorstats, total_error_replies", () => {
  test("exact counts after 3 SETs, 2 wrong arity, 1 failed INCR, unknown command and subcommand, protocol error", async () => {
    const server = await openServer();
    const c = connect(server);
    const replies = await c.call(
      ["SET", "a", "1"],
      ["SET", "b", "2"],
      ["SET", "s", "abc"],
      ["SET", "x"], // rejected: arity
      ["GET"], // rejected: arity
      ["INCR", "s"], // failed: not an integer
      ["INCR", "a"],
      ["NOSUCH", "1"], // unknown: an error, no command counters
      ["CLIENT", "NOSUCH"], // unknown subcommand: likewise
      ["CLIENT", "ID", "extra"], // rejected: client|id arity
      ["HELLO", "4"], // failed: NOPROTO
      ["GET", "a"],
    );
    expect(replies.filter((r) => r instanceof ErrorReply).length).toBe(7);
    const f = await info(c, "commandstats", "errorstats", "stats");
    expect(cmdstat(f, "set")).toMatchObject({ calls: 3, rejected: 1, failed: 0 });
    expect(cmdstat(f, "get")).toMatchObject({ calls: 1, rejected: 1, failed: 0 });
    expect(cmdstat(f, "incr")).toMatchObject({ calls: 2, rejected: 0, failed: 1 });
    expect(cmdstat(f, "client|id")).toMatchObject({ calls: 0, rejected: 1, failed: 0 });
    expect(cmdstat(f, "hello")).toMatchObject({ calls: 1, rejected: 0, failed: 1 });
    expect(cmdstat(f, "client")).toBeUndefined(); // a container counts under its subcommands
    expect(cmdstat(f, "nosuch")).toBeUndefined();
    expect(cmdstat(f, "info")).toBeUndefined(); // INFO is counted once it has run
    expect(errorstats(f)).toEqual({ ERR: 6, NOPROTO: 1 });
    expect(f.get("total_error_replies")).toBe("7");
    // Commands that ran: 3 SET + 2 INCR + HELLO + GET (rejected and unknown ones did not run).
    expect(f.get("total_commands_processed")).toBe("7");
    for (const name of ["set", "get", "incr", "hello"]) {
      const s = cmdstat(f, name)!;
      // usec is the integer part of the total; usec_per_call is rounded to hundredths.
      expect(Math.abs(s.perCall - s.usec / s.calls)).toBeLessThanOrEqual(1 / s.calls + 0.005);
    }

    // A protocol error is an error reply too (and closes the connection).
    const bad = connect(server);
    bad.conn.parser.push(Buffer.from("*1\r\n$-5\r\n"));
    server.process(bad.conn);
    const g = await info(c, "errorstats", "stats", "commandstats");
    expect(errorstats(g)).toEqual({ ERR: 7, NOPROTO: 1 });
    expect(g.get("total_error_replies")).toBe("8");
    expect(g.get("protocol_errors")).toBe("1");
    expect(cmdstat(g, "info")).toMatchObject({ calls: 1, rejected: 0, failed: 0 });
  });

  test("writes that fail after the log: UNCERTAIN then MISCONF, counted as rejected and by prefix", async () => {
    const io = new RecordingIo();
    const server = await openServer(io);
    const c = connect(server);
    await c.call(["SET", "k", "v"]);
    // Idle first: the commit index a tick writes alone is written, so the next log write is the SET's.
    const node = server.node;
    for (let i = 0; i < 500 && (node.node.persistInFlight || node.node.status().commit !== node.applied); i++) await Bun.sleep(2);
    await Bun.sleep(60);
    io.failNext("datasync", "EIO", { pathIncludes: "/wal/" });
    // The only voter stays up after a failed log write: the write in flight has an unknown outcome,
    // later writes are refused before they are logged.
    const [r1] = await c.call(["SET", "k", "w"]);
    const [r2] = await c.call(["APPEND", "k", "z"]);
    expect(String((r1 as ErrorReply).message)).toStartWith("UNCERTAIN ");
    expect(String((r2 as ErrorReply).message)).toStartWith("MISCONF ");
    const f = await info(c, "commandstats", "errorstats", "stats");
    expect(cmdstat(f, "set")).toMatchObject({ calls: 1, rejected: 1, failed: 0 });
    expect(cmdstat(f, "append")).toMatchObject({ calls: 0, rejected: 1, failed: 0 });
    expect(errorstats(f)).toEqual({ MISCONF: 1, UNCERTAIN: 1 });
    expect(f.get("total_error_replies")).toBe("2");
  });

  test("a SAVE that fails answers later: counted as a failed call of save", async () => {
    const io = new RecordingIo();
    const server = await openServer(io);
    const c = connect(server);
    await c.call(["SET", "k", "v"]);
    io.failNext("write", "ENOSPC", { pathIncludes: "/snap/" });
    const [r] = await c.call(["SAVE"]);
    expect(String((r as ErrorReply).message)).toStartWith("ERR snapshot failed");
    const f = await info(c, "commandstats", "errorstats");
    expect(cmdstat(f, "save")).toMatchObject({ calls: 1, rejected: 0, failed: 1 });
    expect(errorstats(f)).toEqual({ ERR: 1 });
  });

  test("total_error_replies is the sum of errorstats; CONFIG RESETSTAT clears both and the command counters", async () => {
    const server = await openServer();
    const c = connect(server);
    await c.call(["AUTH", "bob", "x"], ["SELECT", "9"], ["SELECT", "x"], ["GET"], ["PING"]);
    const f = await info(c, "default");
    const byPrefix = errorstats(f);
    expect(byPrefix).toEqual({ ERR: 3, WRONGPASS: 1 });
    expect(Number(f.get("total_error_replies"))).toBe(Object.values(byPrefix).reduce((a, b) => a + b, 0));
    expect(f.has("cmdstat_ping")).toBe(false); // commandstats is not a default section
    expect(await c.call(["CONFIG", "RESETSTAT"])).toEqual(["OK"]);
    const g = await info(c, "everything");
    expect(errorstats(g)).toEqual({});
    expect(g.get("total_error_replies")).toBe("0");
    expect([...g.keys()].filter((k) => k.startsWith("cmdstat_"))).toEqual(["cmdstat_config|resetstat"]);
    expect(g.get("total_commands_processed")).toBe("1");
  });

  test("error prefixes: the first word within 32 bytes, else ERR; past 128 distinct, tracking stops until reset", () => {
    expect(errorPrefix("WRONGTYPE Operation against a key")).toBe("WRONGTYPE");
    expect(errorPrefix("NOSPACEHERE")).toBe("ERR");
    expect(errorPrefix(`${"X".repeat(40)} y`)).toBe("ERR");
    const st = new ReplyStats(1);
    for (let i = 0; i < ERROR_PREFIXES_MAX; i++) st.countError(`E${i} x`);
    expect(st.errors.size).toBe(ERROR_PREFIXES_MAX);
    st.countError("ONEMORE x");
    st.countError("E1 x");
    expect([...st.errors]).toEqual([["ERRORSTATS_DISABLED", 1]]);
    expect(st.errorReplies).toBe(ERROR_PREFIXES_MAX + 2);
    st.reset();
    st.countError("E1 x");
    expect([...st.errors]).toEqual([["E1", 1]]);
  });
});

describe("INFO sections", () => {
  const sectionsOf = async (c: FakeClient, ...args: string[]) => {
    const [text] = await c.call(["INFO", ...args]);
    return [...String(text).matchAll(/^# (\w+)/gm)].map((m) => m[1]);
  };

  test("default, all, everything, several sections in Redis's order, unknown ones ignored", async () => {
    const server = await openServer();
    const c = connect(server);
    const defaults = ["Server", "Clients", "Memory", "Persistence", "Stats", "Replication", "CPU", "Modules", "Errorstats", "Cluster", "Keyspace", "Raft"];
    expect(await sectionsOf(c)).toEqual(defaults);
    expect(await sectionsOf(c, "default")).toEqual(defaults);
    const every = ["Server", "Clients", "Memory", "Persistence", "Stats", "Replication", "CPU", "Modules", "Commandstats", "Errorstats", "Cluster", "Keyspace", "Raft"];
    expect(await sectionsOf(c, "all")).toEqual(every);
    expect(await sectionsOf(c, "EVERYTHING")).toEqual(every);
    expect(await sectionsOf(c, "keyspace", "nosuch", "CPU", "commandstats", "cpu")).toEqual(["CPU", "Commandstats", "Keyspace"]);
    expect(await sectionsOf(c, "raft", "replication")).toEqual(["Replication", "Raft"]);
    expect(await sectionsOf(c, "default", "commandstats")).toEqual(every);
  });

  test("avg_ttl is the mean remaining TTL of the keys that have one", async () => {
    const server = await openServer();
    const c = connect(server);
    await c.call(["SET", "p", "1"], ["SET", "t1", "1", "EX", "1000"], ["SET", "t2", "1", "EX", "3000"]);
    const f = await info(c, "keyspace");
    const m = /^keys=3,expires=2,avg_ttl=(\d+)$/.exec(f.get("db0")!);
    expect(m).not.toBeNull();
    const avg = Number(m![1]);
    expect(avg).toBeLessThanOrEqual(2_000_000);
    expect(avg).toBeGreaterThan(2_000_000 - 10_000);
  });

  test("before any snapshot: LASTSAVE is the start, as Redis; the last snapshot's duration is -1, not a made-up 0", async () => {
    const server = await openServer();
    const c = connect(server);
    const f = await info(c, "persistence");
    const started = Math.floor(server.stats.startedAtMs / 1000);
    expect(f.get("rdb_last_save_time")).toBe(String(started));
    expect(await c.call(["LASTSAVE"])).toEqual([started]);
    expect(f.get("kv_last_snapshot_ms")).toBe("-1");
    expect(f.get("kv_last_snapshot_longest_slice_ms")).toBe("-1");
    await c.call(["SET", "k", "v"], ["SAVE"]);
    const g = await info(c, "persistence");
    expect(Number(g.get("kv_last_snapshot_ms"))).toBeGreaterThanOrEqual(0);
    expect(Number(g.get("rdb_last_save_time"))).toBeGreaterThanOrEqual(started);
  });

  test("run_id is 40 hex digits", async () => {
    const server = await openServer();
    const f = await info(connect(server), "server");
    expect(f.get("run_id")).toMatch(/^[0-9a-f]{40}$/);
  });
});

describe("CLIENT LIST and CLIENT INFO", () => {
  const FIELDS = "id addr laddr fd name age idle flags db sub psub ssub multi qbuf qbuf-free argv-mem multi-mem rbs rbp obl oll omem tot-mem events cmd user redir resp lib-name lib-ver".split(" ");
  const parse = (line: string) => new Map(line.trim().split(" ").map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));

  test("Redis 7.2's fields in its order; cmd is the last command with its subcommand; values from the connection", async () => {
    const server = await openServer();
    const a = connect(server);
    const b = connect(server);
    await a.call(["CLIENT", "SETNAME", "alpha"], ["CLIENT", "NO-EVICT", "on"], ["SET", "k", "v"]);
    await b.call(["HELLO", "3"], ["CLIENT", "SETINFO", "LIB-NAME", "lib"]);
    const [mine] = await a.call(["CLIENT", "INFO"]);
    expect([...parse(String(mine)).keys()]).toEqual(FIELDS);
    const me = parse(String(mine));
    expect(me.get("id")).toBe(String(a.conn.id));
    expect(me.get("addr")).toBe(`127.0.0.1:${40000 + a.conn.id}`);
    expect(me.get("laddr")).toBe("127.0.0.1:6379");
    expect(me.get("fd")).toBe(String(100 + a.conn.id));
    expect(me.get("name")).toBe("alpha");
    expect(me.get("flags")).toBe("e");
    expect(me.get("cmd")).toBe("client|info");
    expect(me.get("argv-mem")).toBe(String("CLIENT".length + "INFO".length));
    expect(me.get("resp")).toBe("2");
    expect(me.get("events")).toBe("r");

    const [list] = await b.call(["CLIENT", "LIST"]);
    const lines = String(list).trim().split("\n").map(parse);
    expect(lines.map((l) => l.get("id"))).toEqual([String(a.conn.id), String(b.conn.id)]);
    expect(lines[0]!.get("cmd")).toBe("client|info");
    expect(lines[0]!.get("argv-mem")).toBe("0"); // not running anything now
    expect(lines[1]!.get("cmd")).toBe("client|list");
    expect(lines[1]!.get("resp")).toBe("3");
    expect(lines[1]!.get("lib-name")).toBe("lib");
    expect(lines[1]!.get("flags")).toBe("N");

    // The last command is a write once it is applied.
    await a.call(["SET", "k", "w"]);
    const [after] = await b.call(["CLIENT", "LIST", "ID", String(a.conn.id)]);
    expect(parse(String(after)).get("cmd")).toBe("set");
    expect(await b.call(["CLIENT", "LIST", "TYPE", "pubsub"])).toEqual([""]);

    // A command still arriving: its arguments so far are argv-mem, its unparsed bytes qbuf.
    a.conn.parser.push(Buffer.from("*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$10\r\nabc"));
    server.process(a.conn);
    const [partial] = await b.call(["CLIENT", "LIST", "ID", String(a.conn.id)]);
    const p = parse(String(partial));
    expect(p.get("argv-mem")).toBe(String("SET".length + "hello".length));
    expect(p.get("qbuf")).toBe("3");
    expect(Number(p.get("qbuf-free"))).toBeGreaterThan(0);
    expect(Number(p.get("tot-mem"))).toBe(3 + Number(p.get("qbuf-free")) + 8 + Number(p.get("rbs")));
    const [bad] = await b.call(["CLIENT", "LIST", "TYPE", "nosuch"]);
    expect(bad).toBeInstanceOf(ErrorReply);

    // NO-EVICT / NO-TOUCH take ON or OFF; RESET clears them, as Redis.
    expect(await b.call(["CLIENT", "NO-EVICT", "maybe"], ["CLIENT", "NO-TOUCH", "on"])).toEqual([new ErrorReply("ERR syntax error"), "OK"]);
    const flagsOf = async () => parse(String((await b.call(["CLIENT", "INFO"]))[0])).get("flags");
    expect(await flagsOf()).toBe("T");
    await b.call(["RESET"]);
    expect(await flagsOf()).toBe("N");
  });
});

describe("COMMAND", () => {
  test("LIST FILTERBY PATTERN / ACLCAT / MODULE as Redis 7; subcommands listed by full name", async () => {
    const server = await openServer();
    const c = connect(server);
    const [all, pattern, str, conn, mod, unknownCat, bad, bad2] = await c.call(
      ["COMMAND", "LIST"],
      ["COMMAND", "LIST", "FILTERBY", "PATTERN", "CLIENT|*"],
      ["COMMAND", "LIST", "FILTERBY", "ACLCAT", "string"],
      ["COMMAND", "LIST", "FILTERBY", "aclcat", "CONNECTION"],
      ["COMMAND", "LIST", "FILTERBY", "MODULE", "anything"],
      ["COMMAND", "LIST", "FILTERBY", "ACLCAT", "nosuch"],
      ["COMMAND", "LIST", "FILTERBY", "NAME", "x"],
      ["COMMAND", "LIST", "FILTERBY", "PATTERN"],
    );
    expect(all as string[]).toContain("client|list");
    expect(all as string[]).toContain("get");
    expect((pattern as string[]).sort()).toEqual(
      ["client|getname", "client|help", "client|id", "client|info", "client|list", "client|no-evict", "client|no-touch", "client|setinfo", "client|setname"],
    );
    expect((str as string[]).sort()).toEqual(
      ["append", "decr", "decrby", "get", "getdel", "getex", "getrange", "getset", "incr", "incrby", "incrbyfloat", "mget", "mset", "msetnx", "psetex", "set", "setex", "setnx", "setrange", "strlen", "substr"],
    );
    expect(conn as string[]).toContain("hello");
    expect(conn as string[]).toContain("client|list");
    expect(conn as string[]).not.toContain("client"); // the container itself is @slow only
    expect(mod).toEqual([]);
    expect(unknownCat).toEqual([]);
    expect(bad).toEqual(new ErrorReply("ERR syntax error"));
    expect(bad2).toEqual(new ErrorReply("ERR syntax error"));
  });

  test("COMMAND INFO shows ACL categories and subcommands", async () => {
    const server = await openServer();
    const c = connect(server);
    const [get, list, none] = (await c.call(["COMMAND", "INFO", "get", "CLIENT|LIST", "nosuch"]))[0] as RespValue[];
    expect((get as RespValue[])[6]).toEqual(["@read", "@string", "@fast"]);
    expect((list as RespValue[])[0]).toBe("client|list");
    expect((list as RespValue[])[6]).toEqual(["@admin", "@slow", "@dangerous", "@connection"]);
    expect(none).toBeNull();
    const [client] = (await c.call(["COMMAND", "INFO", "client"]))[0] as RespValue[];
    const subs = (client as RespValue[])[9] as RespValue[][];
    expect(subs.map((s) => s[0])).toContain("client|setinfo");
  });

  test("every command and subcommand has Redis's categories, consistent with its flags", () => {
    const known = new Set(ACL_CATEGORY_NAMES.map((n) => `@${n}`));
    for (const c of ALL_COMMANDS.flatMap((x) => [x, ...x.subcommands])) {
      expect(ACL_CATEGORIES[c.fullName]).toBeDefined();
      for (const cat of c.categories) expect(known.has(cat)).toBe(true);
      expect(c.categories.includes("@fast")).not.toBe(c.categories.includes("@slow"));
      if (c.flags.includes("write")) expect(c.categories).toContain("@write");
      if (c.flags.includes("readonly")) expect(c.categories).toContain("@read");
      if (!c.flags.includes("connection")) expect(c.categories.includes("@fast")).toBe(c.flags.includes("fast"));
    }
    expect(Object.keys(ACL_CATEGORIES).length).toBe(ALL_COMMANDS.flatMap((x) => [x, ...x.subcommands]).length);
  });
});
