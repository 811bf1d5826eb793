// AUTH and ACL (WHOAMI, LIST, USERS, CAT, GETUSER, LOG, SAVE, HELP; SETUSER, DELUSER and LOAD
// reach the log as KV.ACL entries, see rewriteAclWrite) with Redis 7's replies and error texts.
import { renameSync, writeFileSync } from "node:fs";
import type { CommandFlag, CommandSpec } from "../kv/command.ts";
import { AclRuleError, AclState } from "../kv/acl.ts";
import type { ReplyWriter } from "../resp/encode.ts";
import { hashRules, NOAUTH_HELLO } from "./acl.ts";
import { ACL_CATEGORY_NAMES } from "./acl-categories.ts";
import type { ServerCtx } from "./dispatch.ts";
import type { ContainerSpec } from "./conn-commands.ts";
import { assert } from "../errors.ts";

type Exec = (ctx: ServerCtx, argv: string[], out: ReplyWriter) => void;

function spec(name: string, arity: number, flags: CommandFlag[], exec: Exec): CommandSpec<ServerCtx> {
  return { name, arity, flags: ["connection", "loading-ok", "noquorum-ok", ...flags], firstKey: 0, lastKey: 0, keyStep: 0, exec };
}

const NO_ACL_FILE =
  "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

/** AUTH/HELLO AUTH for this connection: null on success, else the error reply. */
export function login(ctx: ServerCtx, command: string, user: string, password: string): string | null {
  return ctx.server.acl.authenticate(ctx.conn, command, user, password, Date.now());
}

/** HELLO without AUTH on a connection that has not authenticated. */
export { NOAUTH_HELLO };

function auth(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  if (argv.length > 3) {
    out.error("ERR syntax error");
    return;
  }
  if (argv.length === 2) {
    const d = ctx.server.acl.users.get("default");
    if (d === undefined || d.nopass) {
      out.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
      return;
    }
  }
  const err = argv.length === 3 ? login(ctx, argv[0]!, argv[1]!, argv[2]!) : login(ctx, argv[0]!, "default", argv[1]!);
  if (err === null) out.ok();
  else out.error(err);
}

function getuser(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  const u = ctx.server.acl.users.get(argv[2]!);
  if (u === undefined) {
    out.nil();
    return;
  }
  out.map(6);
  out.bulk("flags");
  const flags = [u.enabled ? "on" : "off", ...(u.nopass ? ["nopass"] : [])];
  out.array(flags.length);
  for (const f of flags) out.bulk(f);
  out.bulk("passwords");
  out.array(u.passwords.length);
  for (const p of u.passwords) out.bulk(p);
  out.bulk("commands");
  out.bulk(u.commands.join(" "));
  out.bulk("keys");
  out.bulk(u.keys.map((k) => (k.read && k.write ? "~" : `%${k.read ? "R" : ""}${k.write ? "W" : ""}~`) + k.pattern).join(" "));
  out.bulk("channels");
  out.bulk(u.channels.map((c) => "&" + c).join(" "));
  out.bulk("selectors");
  out.array(0);
}

function cat(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  if (argv.length === 2) {
    out.array(ACL_CATEGORY_NAMES.length);
    for (const c of ACL_CATEGORY_NAMES) out.bulk(c);
    return;
  }
  const want = "@" + argv[2]!.toLowerCase();
  if (!ACL_CATEGORY_NAMES.includes(want.slice(1))) {
    out.error(`ERR Unknown category '${argv[2]!.slice(0, 128)}'`);
    return;
  }
  const names = ctx.server.dispatcher.withSubcommands.filter((c) => c.categories.includes(want)).map((c) => c.fullName);
  out.array(names.length);
  for (const n of names) out.bulk(n);
}

function aclLog(ctx: ServerCtx, argv: string[], out: ReplyWriter): void {
  const gate = ctx.server.acl;
  let count = 10;
  if (argv.length === 3) {
    if (argv[2]!.toUpperCase() === "RESET") {
      gate.resetLog();
      out.ok();
      return;
    }
    if (!/^\d+$/.test(argv[2]!)) {
      out.error("ERR value is out of range, must be positive");
      return;
    }
    count = Number(argv[2]);
  } else if (argv.length > 3) {
    out.error("ERR syntax error");
    return;
  }
  const now = Date.now();
  const entries = gate.logEntries(count);
  out.array(entries.length);
  for (const e of entries) {
    out.map(7);
    out.bulk("count");
    out.int(e.count);
    out.bulk("reason");
    out.bulk(e.reason);
    out.bulk("context");
    out.bulk(e.context);
    out.bulk("object");
    out.bulk(e.object);
    out.bulk("username");
    out.bulk(e.username);
    out.bulk("age-seconds");
    out.double((now - e.createdMs) / 1000);
    out.bulk("client-info");
    out.bulk(e.clientInfo.trimEnd());
  }
}

function save(ctx: ServerCtx, _argv: string[], out: ReplyWriter): void {
  const file = ctx.server.acl.aclFile;
  if (file === undefined) {
    out.error(NO_ACL_FILE);
    return;
  }
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, ctx.server.acl.users.lines().join("\n") + "\n", { encoding: "latin1", mode: 0o600 });
    renameSync(tmp, file);
  } catch (e) {
    out.error(`ERR There was an error trying to save the ACLs. Please check the server logs for more information (${(e as Error).message})`);
    return;
  }
  out.ok();
}

const HELP = [
  "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
  "CAT [<category>]",
  "    List all commands that belong to <category>, or all command categories",
  "    when no category is specified.",
  "DELUSER <username> [<username> ...]",
  "    Delete a list of users (on every member: through the log).",
  "GETUSER <username>",
  "    Get the user's details.",
  "LIST",
  "    Show users details in config file format.",
  "LOAD",
  "    Reload users from the ACL file (on every member: through the log).",
  "LOG [<count> | RESET]",
  "    Show the ACL log entries of this node.",
  "SAVE",
  "    Save the current config to the ACL file of this node.",
  "SETUSER <username> <attribute> [<attribute> ...]",
  "    Create or modify a user with the specified attributes (on every member: through the log).",
  "USERS",
  "    List all the registered usernames.",
  "WHOAMI",
  "    Return the current connection username.",
  "HELP",
  "    Print this help.",
];

/** Reached only if a SETUSER/DELUSER/LOAD was not turned into KV.ACL (it always is, see rewriteAclWrite). */
const viaLogOnly: Exec = () => assert(false, "ACL SETUSER/DELUSER/LOAD ran without going through the log");

export const ACL_SUBCOMMANDS: CommandSpec<ServerCtx>[] = [
  spec("whoami", 2, [], (ctx, _argv, out) => out.bulk(ctx.conn.user)),
  spec("users", 2, ["admin"], (ctx, _argv, out) => {
    const names = [...ctx.server.acl.users.users.keys()].sort();
    out.array(names.length);
    for (const n of names) out.bulk(n);
  }),
  spec("list", 2, ["admin"], (ctx, _argv, out) => {
    const lines = ctx.server.acl.users.lines();
    out.array(lines.length);
    for (const l of lines) out.bulk(l);
  }),
  spec("getuser", 3, ["admin"], getuser),
  spec("cat", -2, [], (ctx, argv, out) => (argv.length > 3 ? out.error("ERR unknown subcommand or wrong number of arguments for 'CAT'. Try ACL HELP.") : cat(ctx, argv, out))),
  spec("log", -2, ["admin"], aclLog),
  spec("save", 2, ["admin"], save),
  spec("setuser", -3, ["admin"], viaLogOnly),
  spec("deluser", -3, ["admin"], viaLogOnly),
  spec("load", 2, ["admin"], viaLogOnly),
  spec("help", 2, [], (_ctx, _argv, out) => {
    out.array(HELP.length);
    for (const l of HELP) out.simple(l);
  }),
];

export const AUTH_COMMANDS: readonly ContainerSpec[] = [
  { ...spec("acl", -2, [], () => assert(false, "ACL ran without its subcommand")), subcommands: ACL_SUBCOMMANDS },
];

export { auth as authCommand };

/**
 * ACL SETUSER / DELUSER / LOAD as the KV.ACL entry to log, or the error reply if the change is
 * refused before the log (a bad rule, an unknown command or category, no ACL file). Passwords
 * are hashed here: the log, the snapshots and every member only ever hold their SHA-256.
 */
export function rewriteAclWrite(ctx: Pick<ServerCtx, "server">, argv: readonly string[]): { argv: string[] } | { error: string } {
  const sub = argv[1]!.toLowerCase();
  const gate = ctx.server.acl;
  if (sub === "setuser") {
    const name = argv[2]!;
    const rules = hashRules(argv.slice(3));
    try {
      gate.users.checkSetUser(name, rules, gate.names);
    } catch (e) {
      if (!(e instanceof AclRuleError)) throw e;
      return { error: `ERR ${e.message}` };
    }
    return { argv: ["KV.ACL", "SETUSER", name, ...rules] };
  }
  if (sub === "deluser") {
    if (argv.slice(2).includes("default")) return { error: "ERR The 'default' user cannot be removed" };
    return { argv: ["KV.ACL", "DELUSER", ...argv.slice(2)] };
  }
  // LOAD
  if (gate.aclFile === undefined) return { error: NO_ACL_FILE };
  let lines: string[];
  try {
    lines = gate.readAclFile();
    // Every line checked (names, limits, command and category names) before anything is logged.
    new AclState().load(lines, gate.names);
  } catch (e) {
    return { error: `ERR Error loading ACLs, aborting: ${(e as Error).message}` };
  }
  return { argv: ["KV.ACL", "LOAD", ...lines] };
}
