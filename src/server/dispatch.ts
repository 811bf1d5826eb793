// Dispatch: one command table (connection commands + the KV state machine), looked up
// case-insensitively; arity checked and unknown commands answered here, in one place.
import { arityOk, commandLookup, unknownCommandError, type CommandSpec } from "../kv/command.ts";
import { KV_COMMANDS, refuseBeforeLog, type KvCtx } from "../kv/commands.ts";
import type { ReplyWriter } from "../resp/encode.ts";
import { CONN_COMMANDS } from "./conn-commands.ts";
import type { Conn, KvServer } from "./server.ts";

export interface ServerCtx extends KvCtx {
  conn: Conn;
  server: KvServer;
}

export const ALL_COMMANDS: readonly CommandSpec<ServerCtx>[] = [...CONN_COMMANDS, ...(KV_COMMANDS as readonly CommandSpec<ServerCtx>[])];
const lookup = commandLookup(ALL_COMMANDS);
const WRITES = new Set(ALL_COMMANDS.filter((s) => s.flags.includes("write")));

export class Dispatcher {
  readonly commands = ALL_COMMANDS;
  private readonly ctx: ServerCtx;

  constructor(server: KvServer) {
    this.ctx = { db: server.db, nowMs: 0, conn: undefined as unknown as Conn, server };
  }

  readonly lookup = lookup;

  /** True for a known write command with a valid word count: it goes through the log. */
  isLoggedWrite(spec: CommandSpec<ServerCtx> | undefined, argc: number): boolean {
    return spec !== undefined && WRITES.has(spec) && arityOk(spec.arity, argc);
  }

  /** The error for a logged write past the server's limits (see refuseBeforeLog), or null to log it. */
  refusal(spec: CommandSpec<ServerCtx>, argv: readonly string[]): string | null {
    return refuseBeforeLog(spec, argv, this.ctx.server.config.limits.protoMaxBulkLen);
  }

  dispatch(conn: Conn, argv: string[], out: ReplyWriter, nowMs: number): void {
    this.run(conn, lookup(argv[0]!), argv, out, nowMs);
  }

  /** Runs a command found with lookup(): unknown names and bad arity are answered here. */
  run(conn: Conn, spec: CommandSpec<ServerCtx> | undefined, argv: string[], out: ReplyWriter, nowMs: number): void {
    if (spec === undefined) {
      out.error(unknownCommandError(argv));
      return;
    }
    if (!arityOk(spec.arity, argv.length)) {
      out.error(`ERR wrong number of arguments for '${spec.name}' command`);
      return;
    }
    conn.lastCommand = spec.name;
    const ctx = this.ctx;
    ctx.conn = conn;
    ctx.nowMs = nowMs;
    spec.exec(ctx, argv, out);
  }
}
