// ACL users in Redis's rule syntax (`user alice on #<sha256> ~app:* +@read -flushall`): parsing,
// the canonical text (ACL LIST, the ACL file, the snapshot section) and the permission checks.
// Pure: passwords arrive here already hashed (`#<sha256 hex>`); the server hashes `>password`
// before a rule reaches the log, so a clear password is never logged, replicated or snapshotted.
import { globMatch } from "./glob.ts";

/** Users a node holds at most (ACL SETUSER past it is refused): the table is checked per command. */
export const ACL_USERS_MAX = 10_000;
/** Passwords, key patterns and command rules one user holds at most. */
export const ACL_USER_RULES_MAX = 1_000;
/** Bytes of a user name at most. */
export const ACL_USER_NAME_BYTES_MAX = 256;
/**
 * Bytes of every user's ACL LIST line together at most: the users travel in a snapshot file's
 * header (src/node/snapshot-meta.ts), read whole up to 16 MiB.
 */
export const ACL_STATE_BYTES_MAX = 8 * 1024 * 1024;

export interface KeyPattern {
  readonly pattern: string;
  readonly read: boolean;
  readonly write: boolean;
  /** `app:` for `app:*` (a literal prefix then one `*`), matched without the glob matcher; set by settle. */
  readonly prefix?: string | null;
}

export interface AclUser {
  readonly name: string;
  enabled: boolean;
  nopass: boolean;
  /** SHA-256 of each password, lower-case hex. */
  passwords: string[];
  keys: KeyPattern[];
  /** Channel patterns (`&pat`), kept and shown; `allchannels` is `&*`. */
  channels: string[];
  /** Command rules in order (`+@all`, `-flushall`, `+client|id`); the last one that matches decides. */
  commands: string[];
  /** On, every command, every key for reading and writing, every channel: no check is needed (see settle). */
  unrestricted: boolean;
  /** commandAllowed's answers by command full name (a user is never changed in place once settled). */
  decided?: Map<string, boolean>;
}

/** A rule that is not one Redis's syntax knows, or names no command or category. */
export class AclRuleError extends Error {
  override name = "AclRuleError";
  constructor(
    readonly rule: string,
    readonly why: string,
    /** `rule` is the whole message (an error about the user name or the table, not a rule). */
    plain = false,
  ) {
    super(plain ? rule : `Error in ACL SETUSER modifier '${rule}': ${why}`);
  }
}

/** Tells a command rule's name (`get`, `client|list`) or category (`read`) apart from an unknown one. */
export interface AclNames {
  isCommand(fullName: string): boolean;
  isCategory(name: string): boolean;
}

const HEX64 = /^[0-9a-f]{64}$/;
const PLUS = 43;
const AT = 64;

/** A new user as ACL SETUSER creates one: off, no passwords, no keys, no commands. */
export function newUser(name: string): AclUser {
  return { name, enabled: false, nopass: false, passwords: [], keys: [], channels: [], commands: ["-@all"], unrestricted: false };
}

/** Sets the derived `unrestricted` flag once a user's rules are final. */
function settle(u: AclUser): AclUser {
  u.unrestricted = u.enabled && u.commands.length === 1 && u.commands[0] === "+@all" && u.keys.some((k) => k.pattern === "*" && k.read && k.write) && u.channels.includes("*");
  u.decided = new Map();
  u.keys = u.keys.map((k) => ({ pattern: k.pattern, read: k.read, write: k.write, prefix: isPrefixPattern(k.pattern) ? k.pattern.slice(0, -1) : null }));
  return u;
}

/** Commands a user's decision cache holds at most (the table has ~150; odd names never reach it). */
const DECIDED_MAX = 1024;

/** The `default` user of a node with no ACL file: on, no password (or the --requirepass one), every key and command. */
export function defaultUser(passwordSha256: string | null): AclUser {
  const u = newUser("default");
  u.enabled = true;
  u.nopass = passwordSha256 === null;
  if (passwordSha256 !== null) u.passwords = [passwordSha256];
  u.keys = [{ pattern: "*", read: true, write: true }];
  u.channels = ["*"];
  u.commands = ["+@all"];
  return settle(u);
}

function lineBytes(u: AclUser): number {
  return describeUser(u).length + 1;
}

function cloneUser(u: AclUser): AclUser {
  return { ...u, passwords: [...u.passwords], keys: [...u.keys], channels: [...u.channels], commands: [...u.commands], decided: undefined };
}

/**
 * Applies rules to (a copy of) `user`, left to right, as ACL SETUSER does; throws AclRuleError on
 * the first bad rule and then `user` is unchanged. `>password` and `<password` must have been
 * turned into `#hash` / `!hash` by the caller (hashRules in the server).
 */
export function applyRules(user: AclUser, rules: readonly string[], names: AclNames | null): AclUser {
  const u = cloneUser(user);
  for (const rule of rules) applyRule(u, rule, names);
  if (u.passwords.length + u.keys.length + u.channels.length + u.commands.length > ACL_USER_RULES_MAX) {
    throw new AclRuleError(`a user holds at most ${ACL_USER_RULES_MAX} passwords, patterns and command rules`, "", true);
  }
  return settle(u);
}

/** Whitespace or control bytes: a rule or name holding one could not be written as one line of words. */
const UNSPACED = /^[^\x00-\x20\x7f]+$/;

/** A user name is one word of at most ACL_USER_NAME_BYTES_MAX bytes (its ACL file line is words). */
export function checkUserName(name: string): void {
  if (!UNSPACED.test(name)) throw new AclRuleError("Usernames can't contain spaces or null characters", "", true);
  if (name.length > ACL_USER_NAME_BYTES_MAX) throw new AclRuleError(`a user name is at most ${ACL_USER_NAME_BYTES_MAX} bytes`, "", true);
}

function applyRule(u: AclUser, rule: string, names: AclNames | null): void {
  if (!UNSPACED.test(rule)) throw new AclRuleError(rule, "Syntax error");
  const low = rule.toLowerCase();
  switch (low) {
    case "on":
      u.enabled = true;
      return;
    case "off":
      u.enabled = false;
      return;
    case "nopass":
      u.nopass = true;
      u.passwords = [];
      return;
    case "resetpass":
      u.nopass = false;
      u.passwords = [];
      return;
    case "allkeys":
      u.keys = [{ pattern: "*", read: true, write: true }];
      return;
    case "resetkeys":
      u.keys = [];
      return;
    case "allchannels":
      u.channels = ["*"];
      return;
    case "resetchannels":
      u.channels = [];
      return;
    case "allcommands":
      u.commands = ["+@all"];
      return;
    case "nocommands":
      u.commands = ["-@all"];
      return;
    case "reset": {
      const fresh = newUser(u.name);
      Object.assign(u, fresh);
      return;
    }
  }
  const c = rule[0];
  const rest = rule.slice(1);
  if (c === "#" || c === "!") {
    const hash = rest.toLowerCase();
    if (!HEX64.test(hash)) throw new AclRuleError(rule, "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters");
    if (c === "#") {
      if (!u.passwords.includes(hash)) u.passwords.push(hash);
      u.nopass = false;
    } else {
      const at = u.passwords.indexOf(hash);
      if (at < 0) throw new AclRuleError(rule, "no such password");
      u.passwords.splice(at, 1);
    }
    return;
  }
  if (c === ">" || c === "<") throw new AclRuleError(rule, "a clear password reached the rules unhashed");
  if (c === "~") {
    if (rest.length === 0) throw new AclRuleError(rule, "Syntax error");
    addKeyPattern(u, { pattern: rest, read: true, write: true });
    return;
  }
  if (c === "%") {
    const tilde = rest.indexOf("~");
    const perm = tilde < 0 ? "" : rest.slice(0, tilde).toUpperCase();
    if (tilde <= 0 || !/^[RW]+$/.test(perm) || rest.length === tilde + 1) throw new AclRuleError(rule, "Syntax error");
    addKeyPattern(u, { pattern: rest.slice(tilde + 1), read: perm.includes("R"), write: perm.includes("W") });
    return;
  }
  if (c === "&") {
    if (!u.channels.includes(rest)) u.channels.push(rest);
    return;
  }
  if (c === "+" || c === "-") {
    if (rest.length === 0) throw new AclRuleError(rule, "Syntax error");
    if (rest[0] === "@") {
      const cat = rest.slice(1).toLowerCase();
      if (cat === "all") {
        u.commands = [c + "@all"];
        return;
      }
      if (names !== null && !names.isCategory(cat)) throw new AclRuleError(rule, "Unknown command or category name in ACL");
      u.commands.push(c + "@" + cat);
      return;
    }
    const cmd = rest.toLowerCase();
    if (names !== null && !names.isCommand(cmd)) throw new AclRuleError(rule, "Unknown command or category name in ACL");
    u.commands.push(c + cmd);
    return;
  }
  throw new AclRuleError(rule, "Syntax error");
}

function addKeyPattern(u: AclUser, p: KeyPattern): void {
  const same = u.keys.findIndex((k) => k.pattern === p.pattern);
  if (same >= 0) u.keys[same] = { pattern: p.pattern, read: u.keys[same]!.read || p.read, write: u.keys[same]!.write || p.write };
  else u.keys.push(p);
}

/** The user as one ACL LIST line (also its line in an ACL file and in the snapshot). */
export function describeUser(u: AclUser): string {
  const parts = ["user", u.name, u.enabled ? "on" : "off"];
  if (u.nopass) parts.push("nopass");
  for (const h of u.passwords) parts.push("#" + h);
  for (const k of u.keys) parts.push(k.read && k.write ? "~" + k.pattern : `%${k.read ? "R" : ""}${k.write ? "W" : ""}~${k.pattern}`);
  if (u.channels.length === 0) parts.push("resetchannels");
  else for (const ch of u.channels) parts.push("&" + ch);
  parts.push(...u.commands);
  return parts.join(" ");
}

/** The rules of describeUser's output (what follows `user <name>`), to apply to a new user. */
export function parseUserLine(line: string): { name: string; rules: string[] } | null {
  const words = line.trim().split(/\s+/);
  if (words.length < 2 || words[0] !== "user") return null;
  return { name: words[1]!, rules: words.slice(2) };
}

/** The user's command rules as ACL GETUSER shows them. */
export function describeCommands(u: AclUser): string {
  return u.commands.join(" ");
}

/** May `u` run the command `fullName` (`get`, `client|list`) of these categories (`@read`...)? The last matching rule decides. */
export function commandAllowed(u: AclUser, fullName: string, categories: readonly string[]): boolean {
  const known = u.decided?.get(fullName);
  if (known !== undefined) return known;
  const allow = decide(u, fullName, categories);
  if (u.decided !== undefined && u.decided.size < DECIDED_MAX) u.decided.set(fullName, allow);
  return allow;
}

function decide(u: AclUser, fullName: string, categories: readonly string[]): boolean {
  const bar = fullName.indexOf("|");
  for (let i = u.commands.length - 1; i >= 0; i--) {
    const r = u.commands[i]!;
    const allow = r.charCodeAt(0) === PLUS;
    if (r.charCodeAt(1) === AT) {
      if (r.length === 5 && r.endsWith("@all")) return allow;
      // `+@read` against `@read`: the rule without its sign.
      for (const c of categories) if (c.length === r.length - 1 && r.endsWith(c)) return allow;
    } else if ((r.length === fullName.length + 1 && r.endsWith(fullName)) || (bar > 0 && r.length === bar + 1 && r.startsWith(fullName.slice(0, bar), 1))) {
      return allow;
    }
  }
  return false;
}

/** May `u` read (and/or write) `key`? */
/** `app:*`: a literal prefix then one `*` (the common case), matched without the glob matcher. */
function isPrefixPattern(p: string): boolean {
  if (p.charCodeAt(p.length - 1) !== 42) return false;
  for (let i = 0; i < p.length - 1; i++) {
    const c = p.charCodeAt(i);
    if (c === 42 || c === 63 || c === 91 || c === 92) return false; // * ? [ \
  }
  return true;
}

export function keyAllowed(u: AclUser, key: string, read: boolean, write: boolean): boolean {
  for (const k of u.keys) {
    if ((read && !k.read) || (write && !k.write)) continue;
    if (k.prefix != null ? key.startsWith(k.prefix) : globMatch(k.pattern, key)) return true;
  }
  // A key needing both may be covered by a read pattern and a write pattern.
  if (read && write) return keyAllowed(u, key, true, false) && keyAllowed(u, key, false, true);
  return false;
}

/**
 * May `u` use `channel` (PUBLISH, SUBSCRIBE: matched against its `&` patterns), or subscribe to the
 * pattern `channel` (PSUBSCRIBE, `literal`: only a pattern of its own, or `&*`, allows it), as Redis 7?
 */
export function channelAllowed(u: AclUser, channel: string, literal: boolean): boolean {
  for (const p of u.channels) if (p === "*" || (literal ? p === channel : globMatch(p, channel))) return true;
  return false;
}

/** May `u` watch the key pattern `pattern` (KV.WATCH: the changes carry values)? Only with a read pattern `*` or that same pattern. */
export function keyPatternReadable(u: AclUser, pattern: string): boolean {
  for (const k of u.keys) if (k.read && (k.pattern === "*" || k.pattern === pattern)) return true;
  return false;
}

/**
 * The replicated user table: every member applies the same KV.ACL entries in log order, so all
 * agree. `default` always exists.
 */
export class AclState {
  readonly users = new Map<string, AclUser>();
  /**
   * Set once a KV.ACL entry applied (or a snapshot held users): the users are then the replicated
   * ones, written into snapshots; until then they are what this node's flags (--requirepass,
   * --aclfile) made, and a snapshot carries none.
   */
  replicated = false;
  /** Counts changes to the users (every set, delete, load, restore): the server looks for clients to close when it moves. */
  version = 0;

  /** The users this node's flags give (--requirepass, --aclfile): the state before any KV.ACL entry. */
  private configured: string[] = [describeUser(defaultUser(null))];

  constructor() {
    this.restoreConfigured();
  }

  /** Sets the users a node starts from (its flags); they apply at once and after restoring a snapshot without users. */
  configure(lines: readonly string[], names: AclNames | null): void {
    const before = this.configured;
    this.configured = [...lines];
    try {
      this.restoreConfigured(names);
    } catch (e) {
      this.configured = before;
      throw e;
    }
  }

  /** Back to the configured users, as before any KV.ACL entry applied. */
  restoreConfigured(names: AclNames | null = null): void {
    this.users.clear();
    this.users.set("default", defaultUser(null));
    this.totalBytes = lineBytes(this.users.get("default")!);
    this.load(this.configured, names);
    this.replicated = false;
  }

  /** Users other than an unprotected default exist: clients must authenticate (and protected mode is off). */
  get authRequired(): boolean {
    const d = this.users.get("default");
    return d === undefined || !d.enabled || !d.nopass;
  }

  get(name: string): AclUser | undefined {
    return this.users.get(name);
  }

  /** Creates or changes a user; all rules or none. */
  setUser(name: string, rules: readonly string[], names: AclNames | null): void {
    const { user, bytes } = this.checkSetUser(name, rules, names);
    this.users.set(name, user);
    this.totalBytes = bytes;
    this.version++;
  }

  /** What setUser would make, without making it: throws AclRuleError as setUser would. */
  checkSetUser(name: string, rules: readonly string[], names: AclNames | null): { user: AclUser; bytes: number } {
    checkUserName(name);
    if (!this.users.has(name) && this.users.size >= ACL_USERS_MAX) throw new AclRuleError(`at most ${ACL_USERS_MAX} users`, "", true);
    const user = applyRules(this.users.get(name) ?? newUser(name), rules, names);
    const old = this.users.get(name);
    const bytes = this.totalBytes - (old === undefined ? 0 : lineBytes(old)) + lineBytes(user);
    if (bytes > ACL_STATE_BYTES_MAX) throw new AclRuleError(`the users would take ${bytes} bytes, past ${ACL_STATE_BYTES_MAX}`, "", true);
    return { user, bytes };
  }

  /** Bytes of every user's ACL LIST line, with its newline (kept up to date by every change). */
  private totalBytes = 0;

  /** Deletes users (never `default`): the count deleted. */
  delUsers(names: readonly string[]): number {
    let n = 0;
    for (const name of names) {
      const u = this.users.get(name);
      if (name === "default" || u === undefined) continue;
      this.users.delete(name);
      this.totalBytes -= lineBytes(u);
      n++;
    }
    if (n > 0) this.version++;
    return n;
  }

  /** Every user as its ACL LIST line, by name. */
  lines(): string[] {
    return [...this.users.keys()].sort().map((n) => describeUser(this.users.get(n)!));
  }

  /** Replaces every user with the ones these lines describe (an ACL file's, a snapshot's); `default` is kept if absent. */
  load(lines: readonly string[], names: AclNames | null): void {
    const next = new Map<string, AclUser>();
    for (const line of lines) {
      const p = parseUserLine(line);
      if (p === null) throw new AclRuleError(`'${line.slice(0, 64)}' is not a 'user <name> <rules...>' line`, "", true);
      checkUserName(p.name);
      if (next.has(p.name)) throw new AclRuleError(`user '${p.name}' is defined twice`, "", true);
      next.set(p.name, applyRules(newUser(p.name), p.rules, names));
    }
    if (next.size > ACL_USERS_MAX) throw new AclRuleError(`at most ${ACL_USERS_MAX} users`, "", true);
    if (!next.has("default")) next.set("default", this.users.get("default") ?? defaultUser(null));
    let bytes = 0;
    for (const u of next.values()) bytes += lineBytes(u);
    if (bytes > ACL_STATE_BYTES_MAX) throw new AclRuleError(`the users would take ${bytes} bytes, past ${ACL_STATE_BYTES_MAX}`, "", true);
    this.users.clear();
    for (const [k, v] of next) this.users.set(k, v);
    this.totalBytes = bytes;
    this.version++;
  }
}
