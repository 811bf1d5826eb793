// Authentication and ACL checks for client connections: who a connection is (AUTH, HELLO AUTH),
// what it may run (command rules, key patterns), the failed-login limit, the per-node ACL LOG,
// protected mode, and turning ACL SETUSER/DELUSER/LOAD into logged KV.ACL entries (passwords
// hashed first). The users themselves are the state machine's (src/kv/acl.ts), replicated.
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { AclRuleError, channelAllowed, commandAllowed, keyAllowed, keyPatternReadable, type AclNames, type AclState, type AclUser } from "../kv/acl.ts";
import { logger } from "../log.ts";
import { ACL_CATEGORY_NAMES } from "./acl-categories.ts";
import type { ServerCommand } from "./dispatch.ts";
import type { Conn } from "./server.ts";

const log = logger("acl");

export const NOAUTH = "NOAUTH Authentication required.";
export const WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled.";
export const NOAUTH_HELLO =
  "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

/**
 * Failed logins from one client address allowed before AUTH from it is refused: after this many,
 * each further attempt within the refusal window is refused unchecked, and every failure past it
 * doubles the window, from AUTH_REFUSAL_MS_MIN up to AUTH_REFUSAL_MS_MAX. A success clears it.
 */
export const AUTH_FAILURES_FREE = 5;
export const AUTH_REFUSAL_MS_MIN = 1000;
export const AUTH_REFUSAL_MS_MAX = 60_000;
/** Client addresses whose failures are remembered at most (the oldest is forgotten past it). */
export const AUTH_ADDRESSES_MAX = 10_000;
/** ACL LOG entries kept (Redis's acllog-max-len default). */
export const ACL_LOG_MAX = 128;
/** Bytes of an ACL file read at most. */
export const ACL_FILE_BYTES_MAX = 16 * 1024 * 1024;

const NOPERM_KEYS = "NOPERM this user has no permissions to access one of the keys used as arguments";

/** Commands naming channels: the first argument only, or all; `literal`: patterns, allowed only by the same pattern (PSUBSCRIBE). */
const CHANNEL_ARGS: ReadonlyMap<string, { all: boolean; literal: boolean }> = new Map([
  ["publish", { all: false, literal: false }],
  ["spublish", { all: false, literal: false }],
  ["subscribe", { all: true, literal: false }],
  ["ssubscribe", { all: true, literal: false }],
  ["psubscribe", { all: true, literal: true }],
]);

/** Commands an unauthenticated connection may send, and that every user may run (Redis 7's no-auth commands). */
const NO_AUTH_COMMANDS: ReadonlySet<string> = new Set(["auth", "hello", "quit", "reset"]);

export function sha256Hex(text: string): string {
  return createHash("sha256").update(Buffer.from(text, "latin1")).digest("hex");
}

/** Loopback peers (127.0.0.0/8, ::1, and their IPv4-mapped form): the only ones protected mode admits. */
export function isLoopback(addr: string | undefined): boolean {
  if (addr === undefined) return false;
  const a = addr.startsWith("::ffff:") ? addr.slice(7) : addr;
  return a === "::1" || a.startsWith("127.");
}

export const PROTECTED_MODE_DENIED =
  "-DENIED kv is running in protected mode because protected mode is enabled and no password is set for the default user. " +
  "In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to kv you " +
  "may adopt one of the following solutions: 1) Restart the node with the '--protected-mode no' option, however MAKE SURE kv is not " +
  "publicly accessible from internet if you do so. 2) Set up an authentication password for the default user with '--requirepass " +
  "<password>', or users with '--aclfile <file>'. NOTE: You only need to do one of the above things in order for the server to start " +
  "accepting connections from the outside.\r\n";

interface Failures {
  count: number;
  refusedUntilMs: number;
}

interface LogEntry {
  count: number;
  reason: "auth" | "command" | "key" | "channel";
  context: string;
  object: string;
  username: string;
  createdMs: number;
  updatedMs: number;
  clientInfo: string;
}

export interface AclStats {
  deniedAuth: number;
  deniedCmd: number;
  deniedKey: number;
  deniedChannel: number;
  /** AUTH attempts refused unchecked by the failed-login limit. */
  authRateLimited: number;
}

/** The connection-side ACL machinery of one server. */
export class AclGate {
  readonly stats: AclStats = { deniedAuth: 0, deniedCmd: 0, deniedKey: 0, deniedChannel: 0, authRateLimited: 0 };
  private readonly failures = new Map<string, Failures>();
  private readonly entries: LogEntry[] = [];

  constructor(
    /** The replicated users (the state machine's). */
    readonly users: AclState,
    readonly names: AclNames,
    /** --aclfile, for ACL LOAD and ACL SAVE. */
    readonly aclFile: string | undefined,
    /** A connection's CLIENT LIST line (the ACL LOG's client-info), `argv` the command it runs. */
    private readonly clientInfo: (conn: Conn, argv: readonly string[] | null) => string,
  ) {}

  /**
   * The fast path, taken for almost every command: the connection's user may run every command
   * on every key (`on`, `+@all`, `~*`), so nothing else needs checking.
   */
  unrestricted(conn: Conn): boolean {
    return conn.authenticated && this.users.get(conn.user)?.unrestricted === true;
  }

  private seenVersion = 0;

  /**
   * After the users changed (an applied ACL SETUSER, DELUSER or LOAD, or a snapshot): the clients
   * Redis would close, with why. A client whose user was deleted; a subscriber whose user may no
   * longer use one of its channels or patterns; a KV.WATCH whose user may no longer read its
   * pattern. Nothing when the users did not change since the last call.
   */
  staleClients(conns: Iterable<Conn>): [Conn, string][] {
    if (this.users.version === this.seenVersion) return [];
    this.seenVersion = this.users.version;
    const out: [Conn, string][] = [];
    for (const c of conns) {
      if (!c.authenticated || c.closed) continue;
      const u = this.users.get(c.user);
      if (u === undefined) {
        out.push([c, `its user '${c.user}' was deleted`]);
        continue;
      }
      const subs = c.subs;
      if (subs === null || !subs.active() || u.unrestricted) continue;
      const lost =
        [...subs.channels, ...subs.shard].find((ch) => !channelAllowed(u, ch, false)) ??
        [...subs.patterns].find((p) => !channelAllowed(u, p, true)) ??
        [...subs.watches.keys()].find((p) => !keyPatternReadable(u, p));
      if (lost !== undefined) out.push([c, `its user '${c.user}' may no longer subscribe to or watch '${lost}'`]);
    }
    return out;
  }

  /** A new connection starts as `default`, authenticated when that user is on and needs no password. */
  initConn(conn: Conn): void {
    conn.user = "default";
    const d = this.users.get("default");
    conn.authenticated = d !== undefined && d.enabled && d.nopass;
  }

  /** Protected mode (Redis's): the default user has no password and the peer is not on loopback. */
  protectedRefusal(remote: string | undefined): boolean {
    const d = this.users.get("default");
    return d !== undefined && d.nopass && !isLoopback(remote);
  }

  /**
   * AUTH/HELLO AUTH (`command`, as sent: the ACL LOG's object): null on success (the connection is
   * then `user`), else the error reply. Past the failed-login limit for the client's address the
   * password is not even checked.
   */
  authenticate(conn: Conn, command: string, user: string, password: string, nowMs: number): string | null {
    const ip = conn.socket.remoteAddress ?? "";
    const f = this.failures.get(ip);
    if (f !== undefined && f.refusedUntilMs > nowMs) {
      this.stats.authRateLimited++;
      return `WRONGPASS too many failed authentication attempts from ${ip}: AUTH refused for ${f.refusedUntilMs - nowMs} ms`;
    }
    const u = this.users.get(user);
    if (u !== undefined && u.enabled && (u.nopass || passwordMatches(u, password))) {
      this.failures.delete(ip);
      conn.user = user;
      conn.authenticated = true;
      return null;
    }
    this.stats.deniedAuth++;
    this.addLog("auth", "toplevel", command, user, nowMs, conn, null);
    const n = (f?.count ?? 0) + 1;
    let until = 0;
    if (n >= AUTH_FAILURES_FREE) {
      until = nowMs + Math.min(AUTH_REFUSAL_MS_MAX, AUTH_REFUSAL_MS_MIN * 2 ** Math.min(16, n - AUTH_FAILURES_FREE));
      if (n === AUTH_FAILURES_FREE) log.warn(`${n} failed logins from ${ip}: further AUTH from it refused for a while (the wait doubles per failure)`);
    }
    this.failures.delete(ip); // re-inserted last: the map's order is the forgetting order
    if (this.failures.size >= AUTH_ADDRESSES_MAX) this.failures.delete(this.failures.keys().next().value!);
    this.failures.set(ip, { count: n, refusedUntilMs: until });
    return WRONGPASS;
  }

  /** Failed logins remembered for an address (0 after a success). */
  failuresOf(ip: string): number {
    return this.failures.get(ip)?.count ?? 0;
  }

  /**
   * May this connection run `cmd` (resolved to its subcommand) with these arguments? null, or the
   * error reply (the denial is counted and logged).
   */
  check(conn: Conn, cmd: ServerCommand, argv: readonly string[], nowMs: number): string | null {
    if (NO_AUTH_COMMANDS.has(cmd.fullName)) return null;
    if (!conn.authenticated) return NOAUTH;
    const u = this.users.get(conn.user);
    if (u === undefined) {
      // Deleted since it logged in (the server closes such clients once the deletion applies, as Redis does).
      conn.authenticated = false;
      return NOAUTH;
    }
    // A user turned off can no longer log in; connections already logged in keep working (as Redis).
    if (!commandAllowed(u, cmd.fullName, cmd.categories)) {
      this.stats.deniedCmd++;
      this.addLog("command", "toplevel", cmd.fullName, u.name, nowMs, conn, argv);
      return `NOPERM this user has no permissions to run the '${cmd.fullName}' command`;
    }
    if (cmd.firstKey > 0) {
      const denied = deniedKey(u, cmd, argv);
      if (denied !== null) {
        this.stats.deniedKey++;
        this.addLog("key", "toplevel", denied, u.name, nowMs, conn, argv);
        return NOPERM_KEYS;
      }
    }
    const channels = CHANNEL_ARGS.get(cmd.name);
    if (channels !== undefined) {
      const last = channels.all ? argv.length - 1 : 1;
      for (let i = 1; i <= last; i++) {
        if (channelAllowed(u, argv[i]!, channels.literal)) continue;
        this.stats.deniedChannel++;
        this.addLog("channel", "toplevel", argv[i]!, u.name, nowMs, conn, argv);
        return "NOPERM this user has no permissions to access one of the channels used as arguments";
      }
    }
    if (cmd.name === "kv.watch" && argv.length >= 2 && !keyPatternReadable(u, argv[1]!)) {
      this.stats.deniedKey++;
      this.addLog("key", "toplevel", argv[1]!, u.name, nowMs, conn, argv);
      return NOPERM_KEYS;
    }
    return null;
  }

  private addLog(reason: LogEntry["reason"], context: string, object: string, username: string, nowMs: number, conn: Conn, argv: readonly string[] | null): void {
    const clientInfo = () => this.clientInfo(conn, argv);
    const same = this.entries.find((e) => e.reason === reason && e.context === context && e.object === object && e.username === username);
    if (same !== undefined) {
      same.count++;
      same.updatedMs = nowMs;
      same.clientInfo = clientInfo();
      this.entries.splice(this.entries.indexOf(same), 1);
      this.entries.unshift(same);
      return;
    }
    this.entries.unshift({ count: 1, reason, context, object, username, createdMs: nowMs, updatedMs: nowMs, clientInfo: clientInfo() });
    if (this.entries.length > ACL_LOG_MAX) this.entries.pop();
  }

  /** ACL LOG's entries, newest first. */
  logEntries(count: number): readonly LogEntry[] {
    return this.entries.slice(0, count);
  }

  resetLog(): void {
    this.entries.length = 0;
  }

  /** The lines of --aclfile, checked (command and category names too); throws AclRuleError or a file error. */
  readAclFile(): string[] {
    if (this.aclFile === undefined) throw new Error("no ACL file");
    const text = readFileSync(this.aclFile, "latin1");
    if (text.length > ACL_FILE_BYTES_MAX) throw new AclRuleError(`${this.aclFile} is larger than ${ACL_FILE_BYTES_MAX} bytes`, "", true);
    return parseAclFile(text, this.names);
  }
}

/** An ACL file's user lines (comments and blank lines skipped), each checked and with `>password` hashed. */
export function parseAclFile(text: string, names: AclNames | null): string[] {
  const lines: string[] = [];
  let n = 0;
  for (const raw of text.split(/\r?\n/)) {
    n++;
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const words = line.split(/\s+/);
    if (words[0] !== "user" || words.length < 2) throw new AclRuleError(`line ${n} should start with user keyword followed by the username`, "", true);
    lines.push(["user", words[1]!, ...hashRules(words.slice(2))].join(" "));
  }
  // Every line is checked by applying it to a throwaway user.
  return lines;
}

/** ACL SETUSER's rules with each `>password` as `#sha256` and each `<password` as `!sha256`. */
export function hashRules(rules: readonly string[]): string[] {
  return rules.map((r) => (r[0] === ">" ? "#" + sha256Hex(r.slice(1)) : r[0] === "<" ? "!" + sha256Hex(r.slice(1)) : r));
}

function passwordMatches(u: AclUser, password: string): boolean {
  const h = Buffer.from(sha256Hex(password), "latin1");
  let ok = false;
  for (const p of u.passwords) if (timingSafeEqual(h, Buffer.from(p, "latin1"))) ok = true;
  return ok;
}

/** The first key of argv that `u` may not use as `cmd` does (read for read-only commands, write for writes), or null. */
function deniedKey(u: AclUser, cmd: ServerCommand, argv: readonly string[]): string | null {
  const write = cmd.flags.includes("write");
  const read = !write || READ_WRITE.has(cmd.name) || (cmd.name === "set" && argv.some((a, i) => i >= 3 && a.toUpperCase() === "GET"));
  const last = cmd.lastKey < 0 ? argv.length + cmd.lastKey : cmd.lastKey;
  const step = cmd.keyStep > 0 ? cmd.keyStep : 1;
  for (let i = cmd.firstKey; i <= last && i < argv.length; i += step) {
    if (!keyAllowed(u, argv[i]!, read, write)) return argv[i]!;
  }
  return null;
}

/** Writes that also return the value they change (Redis's key specs: RW ACCESS): they need read and write permission. */
const READ_WRITE: ReadonlySet<string> = new Set(["getset", "getdel", "getex", "incr", "decr", "incrby", "decrby", "incrbyfloat"]);

/** Command and category names as the server's table has them. */
export function aclNames(lookupFullName: (name: string) => ServerCommand | undefined): AclNames {
  const cats = new Set(ACL_CATEGORY_NAMES);
  return {
    isCommand: (n) => lookupFullName(n) !== undefined,
    isCategory: (n) => cats.has(n),
  };
}
