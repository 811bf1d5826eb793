// Read modes (docs/cluster.md, "Read modes"): READONLY and READWRITE choose a connection's mode,
// `KV.READ STALE|LINEARIZABLE <command...>` one read's, KV.LASTINDEX tells the log index of the
// connection's last write and KV.WAITINDEX waits until an index is applied on this node (read your
// writes on any node). The server applies the modes where it routes reads (server.ts process).
import type { CommandFlag, CommandSpec } from "../kv/command.ts";
import type { ReplyWriter } from "../resp/encode.ts";
import type { ServerCtx } from "./dispatch.ts";

/** KV.WAITINDEX waits this long unless told otherwise, and never longer than the max. */
export const WAIT_INDEX_TIMEOUT_MS_DEFAULT = 5_000;
export const WAIT_INDEX_TIMEOUT_MS_MAX = 60_000;

type Exec = (ctx: ServerCtx, argv: string[], out: ReplyWriter) => void;

function spec(name: string, arity: number, flags: CommandFlag[], exec: Exec): CommandSpec<ServerCtx> {
  return { name, arity, flags: ["connection", "loading-ok", "noquorum-ok", ...flags], firstKey: 0, lastKey: 0, keyStep: 0, exec };
}

/** A read's mode as KV.READ names it. */
export type ReadMode = "stale" | "linearizable";

/**
 * `KV.READ <mode> <command...>`: the mode and the inner command, or null when the prefix is not
 * well formed (an unknown mode, or a command that does not read the keyspace): then KV.READ runs
 * as a command and answers the error (see KV.READ's exec).
 */
export function unwrapRead(argv: string[], isRead: (name: string, argc: number) => boolean): { mode: ReadMode; argv: string[] } | null {
  if (argv.length < 3) return null;
  const mode = argv[1]!.toLowerCase();
  if (mode !== "stale" && mode !== "linearizable") return null;
  const inner = argv.slice(2);
  if (!isRead(inner[0]!, inner.length)) return null;
  return { mode, argv: inner };
}

function parseIndex(text: string): number | null {
  if (!/^\d{1,16}$/.test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : null;
}

export const READ_COMMANDS: readonly CommandSpec<ServerCtx>[] = [
  // Redis's commands for replica reads (cluster clients send READONLY to replicas): on a follower,
  // READONLY serves this connection's reads from the node's own state within --max-staleness;
  // READWRITE (the default, and after RESET) makes them linearizable again.
  spec("readonly", 1, ["fast"], (ctx, _argv, out) => {
    ctx.conn.readOnly = true;
    out.ok();
  }),
  spec("readwrite", 1, ["fast"], (ctx, _argv, out) => {
    ctx.conn.readOnly = false;
    out.ok();
  }),
  // The server unwraps a well-formed KV.READ before it runs (server.ts); what reaches here is not.
  spec("kv.read", -3, ["fast"], (ctx, argv, out) => {
    const mode = argv[1]!.toLowerCase();
    if (mode !== "stale" && mode !== "linearizable") {
      out.error(`ERR KV.READ mode '${argv[1]!.slice(0, 32)}' is not STALE or LINEARIZABLE`);
      return;
    }
    const inner = ctx.server.dispatcher.lookup(argv[2]!);
    if (inner === undefined) out.error(`ERR KV.READ: unknown command '${argv[2]!.slice(0, 64)}'`);
    else if (!inner.flags.includes("readonly")) out.error(`ERR KV.READ takes a command that reads the keyspace; '${inner.name}' is not one`);
    else out.error(`ERR wrong number of arguments for '${inner.name}' command`);
  }),
  spec("kv.lastindex", 1, ["fast"], (ctx, _argv, out) => out.int(ctx.conn.lastWriteIndex)),
  spec("kv.waitindex", -2, [], (ctx, argv, out) => {
    if (argv.length > 3) {
      out.error("ERR syntax error: KV.WAITINDEX <index> [timeout-ms]");
      return;
    }
    const index = parseIndex(argv[1]!);
    if (index === null) {
      out.error(`ERR KV.WAITINDEX index '${argv[1]!.slice(0, 32)}' is not a non-negative integer`);
      return;
    }
    let timeoutMs = WAIT_INDEX_TIMEOUT_MS_DEFAULT;
    if (argv.length === 3) {
      const t = parseIndex(argv[2]!);
      if (t === null || t > WAIT_INDEX_TIMEOUT_MS_MAX) {
        out.error(`ERR KV.WAITINDEX timeout '${argv[2]!.slice(0, 32)}' is not an integer in 0..${WAIT_INDEX_TIMEOUT_MS_MAX} (ms)`);
        return;
      }
      timeoutMs = t;
    }
    const node = ctx.server.node;
    if (node.applied >= index) {
      out.int(node.applied);
      return;
    }
    // Answered in this connection's order once applied or timed out; commands behind it wait.
    const settle = ctx.server.defer(ctx.conn);
    void node.waitApplied(index, timeoutMs).then((ok) =>
      settle((o) => {
        if (ok) o.int(node.applied);
        else o.error(`TIMEOUT index ${index} was not applied on this node within ${timeoutMs} ms (applied index ${node.applied})`);
      }),
    );
  }),
];
