// Dispatch: one command table (connection commands + the KV state machine), looked up
// case-insensitively; subcommands resolved, arity checked and unknown commands answered here, in
// one place, which is also where every command is counted for INFO commandstats.
import { assert } from "../errors.ts";
import { arityOk, commandLookup, unknownCommandError, type CommandSpec } from "../kv/command.ts";
import { KV_COMMANDS, refuseBeforeLog, type KvCtx } from "../kv/commands.ts";
import type { ReplyWriter } from "../resp/encode.ts";
import { ACL_CATEGORIES } from "./acl-categories.ts";
import { CLUSTER_COMMANDS } from "./cluster-commands.ts";
import { CONN_COMMANDS, type ContainerSpec } from "./conn-commands.ts";
import { PEER_COMMANDS } from "./peer-commands.ts";
import { RAFT_COMMANDS } from "./raft-commands.ts";
import { BACKUP_COMMANDS } from "./backup-commands.ts";
import { PUBSUB_COMMANDS } from "./pubsub.ts";
import { PUBSUB_KV_COMMANDS } from "../kv/publish.ts";
import { READ_COMMANDS } from "./read-commands.ts";
import { AUTH_COMMANDS } from "./auth-commands.ts";
import { ACL_KV_COMMANDS } from "../kv/acl-commands.ts";
import { TXN_COMMANDS } from "./txn-commands.ts";
import type { Conn, KvServer } from "./server.ts";
import { ReplyStats } from "./stats.ts";

export interface ServerCtx extends KvCtx {
  conn: Conn;
  server: KvServer;
}

/** A command-table entry as the server runs it: with its full name, ACL categories and subcommands. */
export interface ServerCommand extends CommandSpec<ServerCtx> {
  /** Index of its counters in ReplyStats.commands. */
  readonly id: number;
  /** `client|list` for a subcommand; the name otherwise. */
  readonly fullName: string;
  /** ACL categories as COMMAND INFO shows them: `@read`, `@string`, `@fast`... */
  readonly categories: readonly string[];
  /** A container command's subcommands (CLIENT, CONFIG, COMMAND); empty otherwise. */
  readonly subcommands: readonly ServerCommand[];
  readonly subcommand: ((name: string) => ServerCommand | undefined) | null;
}

let nextId = 0;
function build(spec: ContainerSpec, parent: string | null): ServerCommand {
  const fullName = parent === null ? spec.name : `${parent}|${spec.name}`;
  const categories = ACL_CATEGORIES[fullName];
  assert(categories !== undefined, `command ${fullName} has no ACL categories`);
  const subcommands = (spec.subcommands ?? []).map((s) => build(s, fullName));
  const subcommand = subcommands.length > 0 ? (commandLookup(subcommands) as (name: string) => ServerCommand | undefined) : null;
  return { ...spec, id: nextId++, fullName, categories: categories.split(" "), subcommands, subcommand };
}

export const ALL_COMMANDS: readonly ServerCommand[] = [...CONN_COMMANDS, ...CLUSTER_COMMANDS, ...PEER_COMMANDS, ...RAFT_COMMANDS, ...BACKUP_COMMANDS, ...READ_COMMANDS, ...TXN_COMMANDS, ...PUBSUB_COMMANDS, ...AUTH_COMMANDS, ...(PUBSUB_KV_COMMANDS as readonly CommandSpec<ServerCtx>[]), ...(KV_COMMANDS as readonly CommandSpec<ServerCtx>[]), ...(ACL_KV_COMMANDS as readonly CommandSpec<ServerCtx>[])].map((s) => build(s, null));
/** Commands and subcommands: the size of the statistics table. */
const COMMAND_IDS = nextId;
const lookup = commandLookup(ALL_COMMANDS) as (name: string) => ServerCommand | undefined;
const WRITES = new Set(ALL_COMMANDS.filter((s) => s.flags.includes("write") || s.flags.includes("logged")));

/** Every command and subcommand, each container followed by its subcommands (COMMAND LIST's order). */
const WITH_SUBCOMMANDS: readonly ServerCommand[] = ALL_COMMANDS.flatMap((c) => [c, ...c.subcommands]);

export class Dispatcher {
  readonly commands = ALL_COMMANDS;
  /** Error replies and per-command counters; every reply buffer of the server reports its errors here. */
  readonly stats = new ReplyStats(COMMAND_IDS);
  private readonly ctx: ServerCtx;
  /** State of the logged write being applied (see beginApply). */
  private applyStart = 0;
  private applyErrors = 0;

  constructor(private readonly server: KvServer) {
    this.ctx = { db: server.db, nowMs: 0, conn: undefined as unknown as Conn, server };
  }

  readonly lookup = lookup;
  readonly withSubcommands = WITH_SUBCOMMANDS;

  /** A command or subcommand by its full name (`get`, `CLIENT|LIST`), case-insensitively. */
  lookupFullName(name: string): ServerCommand | undefined {
    const bar = name.indexOf("|");
    if (bar < 0) return lookup(name);
    return lookup(name.slice(0, bar))?.subcommand?.(name.slice(bar + 1));
  }

  /** True for a known write command with a valid word count: it goes through the log. */
  isLoggedWrite(spec: CommandSpec<ServerCtx> | undefined, argc: number): boolean {
    return spec !== undefined && WRITES.has(spec as ServerCommand) && arityOk(spec.arity, argc);
  }

  /** The error for a logged write past the server's limits (see refuseBeforeLog), or null to log it. */
  refusal(spec: CommandSpec<ServerCtx>, argv: readonly string[]): string | null {
    return refuseBeforeLog(spec, argv, this.ctx.server.config.limits.protoMaxBulkLen);
  }

  dispatch(conn: Conn, argv: string[], out: ReplyWriter, nowMs: number): void {
    this.run(conn, lookup(argv[0]!), argv, out, nowMs);
  }

  /**
   * Runs a command found with lookup(): unknown names and subcommands and bad arity are answered
   * here. As in Redis 7, a command refused before it runs counts as rejected (an unknown one has
   * no counters, only its error reply), one whose execution answers an error as failed.
   */
  run(conn: Conn, spec: CommandSpec<ServerCtx> | undefined, argv: string[], out: ReplyWriter, nowMs: number): void {
    let cmd = spec as ServerCommand | undefined;
    if (cmd !== undefined && cmd.subcommand !== null && argv.length >= 2) {
      cmd = cmd.subcommand(argv[1]!);
      if (cmd === undefined) {
        conn.lastCommand = "";
        out.error(`ERR unknown subcommand '${argv[1]!.slice(0, 128)}'. Try ${argv[0]!.toUpperCase()} HELP.`);
        return;
      }
    }
    if (cmd === undefined) {
      conn.lastCommand = "";
      out.error(unknownCommandError(argv));
      return;
    }
    conn.lastCommand = cmd.fullName;
    if (!arityOk(cmd.arity, argv.length)) {
      this.reject(cmd, out, `ERR wrong number of arguments for '${cmd.fullName}' command`);
      return;
    }
    const ctx = this.ctx;
    ctx.conn = conn;
    ctx.nowMs = nowMs;
    const errors = this.stats.errorReplies;
    const t0 = performance.now();
    cmd.exec(ctx, argv, out);
    this.counted(cmd, t0, errors);
  }

  /** Refuses a command before it runs: its error reply, counted as a rejected call. */
  reject(cmd: ServerCommand, out: ReplyWriter, text: string): void {
    this.stats.commands[cmd.id]!.rejected++;
    out.error(text);
  }

  /** The error reply of a command whose reply was deferred (SAVE), counted as a failed call of it. */
  failedLater(name: string, out: ReplyWriter, text: string): void {
    const cmd = lookup(name);
    assert(cmd !== undefined, `no command ${name}`);
    this.stats.commands[cmd.id]!.failed++;
    out.error(text);
  }

  /** Counts a logged write that the log refused or lost (its error reply is written by the caller). */
  rejectLogged(argv: readonly string[]): void {
    const cmd = lookup(argv[0]!);
    assert(cmd !== undefined, "a logged write that is not a command");
    this.stats.commands[cmd.id]!.rejected++;
  }

  /** Called just before the state machine applies a logged write; endApply just after. */
  beginApply(): void {
    this.applyErrors = this.stats.errorReplies;
    this.applyStart = performance.now();
  }

  endApply(conn: Conn, argv: readonly string[]): void {
    const cmd = lookup(argv[0]!);
    assert(cmd !== undefined, "an applied write that is not a command");
    conn.lastCommand = cmd.fullName;
    this.counted(cmd, this.applyStart, this.applyErrors);
  }

  private counted(cmd: ServerCommand, t0: number, errorsBefore: number): void {
    const st = this.stats.commands[cmd.id]!;
    st.usec += (performance.now() - t0) * 1000;
    st.calls++;
    if (this.stats.errorReplies !== errorsBefore) st.failed++;
    this.server.stats.commandsProcessed++;
  }
}
