// MULTI, EXEC, DISCARD, WATCH, UNWATCH: Redis 7's transactions over the log.
//
// The server queues a connection's commands between MULTI and EXEC (each checked as it comes:
// unknown names, bad arity and commands that cannot run in a transaction answer an error and
// make EXEC answer EXECABORT). EXEC turns the queue and the connection's watched keys into one
// command (src/kv/txn.ts): `KV.TXN` when any queued command writes, proposed or forwarded like
// any write, so the transaction is one log entry applied whole on every member; `KV.TXNREAD`
// when every queued command reads, run on this node's state behind a read barrier, as reads are.
//
// WATCH runs in the connection's order (after its earlier writes applied) and, on a follower,
// behind a read barrier, as a read: it records, per key, the node's applied index and whether
// the key was live then. The state machine aborts the transaction (a null reply) when a watched
// key may have changed after that index (Db.changedSince), the same way on every member.
//
// MULTI's state changes as commands are parsed (so a pipelined MULTI ... EXEC queues what
// follows it); WATCH's as they run. An EXEC parsed while a WATCH of the connection has not run
// yet waits (Conn.heldWrite) until every command before it has.
import { arityOk, unknownCommandError, type CommandSpec } from "../kv/command.ts";
import { lookupTxnInner } from "../kv/commands.ts";
import { encodeTxn, TXN_COMMANDS_MAX, TXN_WATCH_KEYS_MAX, txnLookup } from "../kv/txn.ts";
import type { ReplyBuffer, ReplyWriter } from "../resp/encode.ts";
import type { ServerCtx } from "./dispatch.ts";
import type { Conn } from "./server.ts";

/** Bytes of arguments one transaction may queue (past it, an error and EXECABORT): the entry stays far below the log's record limit. */
export const TXN_BYTES_MAX = 128 * 1024 * 1024;
/** Bytes counted per queued word on top of its length (its RESP framing in the entry). */
const TXN_WORD_OVERHEAD_BYTES = 16;

export const ERR_EXECABORT = "EXECABORT Transaction discarded because of previous errors.";
const ERR_NESTED = "ERR MULTI calls can not be nested";
const ERR_WATCH_IN_MULTI = "ERR WATCH inside MULTI is not allowed";
const ERR_NOT_ALLOWED = "ERR Command not allowed inside a transaction";

/** A connection's transaction state (Conn.txn), made by its first MULTI or WATCH. */
export class ConnTxn {
  /** Between MULTI and EXEC/DISCARD (as parsed). */
  multi = false;
  /** A queued command was refused: EXEC answers EXECABORT. */
  dirty = false;
  queue: string[][] = [];
  bytes = 0;
  /** Watched keys: the applied index WATCH saw each at, and whether it was live then. */
  watched = new Map<string, readonly [w: number, live: boolean]>();
  /** WATCH/UNWATCH commands parsed and not yet run. */
  watchPending = 0;

  endMulti(): void {
    this.multi = false;
    this.dirty = false;
    this.queue = [];
    this.bytes = 0;
  }
}

/** What process() does with a command after interceptTxn. */
export const TXN_HANDLED = 1; // answered (or queued): next command
export const TXN_HOLD = 2; // wait until everything before it ran, then parse it again
/** Or the argv to run instead (EXEC's KV.TXN / KV.TXNREAD), or null: run the command as usual. */
export type TxnVerdict = typeof TXN_HANDLED | typeof TXN_HOLD | string[] | null;

const PARSE_TIME = new Set(["multi", "exec", "discard", "watch", "unwatch", "reset"]);

/** A reply in the connection's order: now when nothing is owed before it, else queued. */
function answer(conn: Conn, out: ReplyBuffer, reply: (o: ReplyWriter) => void): void {
  if (conn.pending.length === 0) reply(out);
  else conn.pend({ kind: "later", reply });
}

/**
 * Called by the server for each parsed client command before it is routed: MULTI, EXEC and
 * DISCARD, and every command between MULTI and EXEC, are handled here.
 */
export function interceptTxn(conn: Conn, spec: CommandSpec<ServerCtx> | undefined, argv: string[], out: ReplyBuffer): TxnVerdict {
  const name = spec?.name;
  let txn = conn.txn;
  if (txn === null && (name === undefined || !PARSE_TIME.has(name))) return null;
  if (txn === null) txn = conn.txn = new ConnTxn();
  if (!txn.multi) {
    if (name === "multi" && argv.length === 1) {
      txn.multi = true;
      answer(conn, out, (o) => o.ok());
      return TXN_HANDLED;
    }
    if ((name === "watch" && argv.length >= 2) || (name === "unwatch" && argv.length === 1)) txn.watchPending++;
    if (name === "reset") conn.txn = null;
    return null; // EXEC/DISCARD without MULTI answer their errors when they run
  }
  if (spec !== undefined && !arityOk(spec.arity, argv.length)) {
    const text = `ERR wrong number of arguments for '${spec.name}' command`;
    if (name === "exec") {
      // As Redis: a refused EXEC discards the transaction.
      txn.endMulti();
      txn.watched.clear();
      answer(conn, out, (o) => o.error(`EXECABORT Transaction discarded because of: ${text.slice(4)}`));
      return TXN_HANDLED;
    }
    txn.dirty = true;
    answer(conn, out, (o) => o.error(text));
    return TXN_HANDLED;
  }
  switch (name) {
    case "exec":
    case "discard": {
      if (txn.watchPending > 0) {
        if (conn.pending.length > 0) return TXN_HOLD;
        // A WATCH that never ran (its read point failed and it answered an error): the keys it
        // named are not watched, so the transaction must not run as if they were.
        txn.watchPending = 0;
        txn.watched.clear();
        txn.endMulti();
        answer(conn, out, name === "exec" ? (o) => o.nilArray() : (o) => o.ok());
        return TXN_HANDLED;
      }
      const { queue, dirty } = txn;
      const watched = [...txn.watched].map(([k, [w, live]]) => [k, w, live] as const);
      txn.endMulti();
      txn.watched.clear();
      if (name === "discard") {
        answer(conn, out, (o) => o.ok());
        return TXN_HANDLED;
      }
      if (dirty) {
        answer(conn, out, (o) => o.error(ERR_EXECABORT));
        return TXN_HANDLED;
      }
      const readOnly = queue.every((c) => txnLookup(lookupTxnInner, c[0]!)!.flags.includes("readonly"));
      return encodeTxn({ watched, commands: queue }, readOnly ? "KV.TXNREAD" : "KV.TXN");
    }
    case "multi":
      answer(conn, out, (o) => o.error(ERR_NESTED));
      return TXN_HANDLED;
    case "watch":
      answer(conn, out, (o) => o.error(ERR_WATCH_IN_MULTI));
      return TXN_HANDLED;
    case "quit":
      return null;
    case "reset":
      conn.txn = null;
      return null;
  }
  let refusal: string | null = null;
  if (spec === undefined) refusal = unknownCommandError(argv);
  else if (txnLookup(lookupTxnInner, spec.name) === undefined || spec.name === "kv.txn" || spec.name === "kv.txnread") refusal = ERR_NOT_ALLOWED;
  else if (txn.queue.length >= TXN_COMMANDS_MAX) refusal = `ERR transaction past ${TXN_COMMANDS_MAX} queued commands`;
  else {
    let bytes = 0;
    for (const w of argv) bytes += w.length + TXN_WORD_OVERHEAD_BYTES;
    if (txn.bytes + bytes > TXN_BYTES_MAX) refusal = `ERR transaction past ${TXN_BYTES_MAX} bytes of queued commands`;
    else {
      txn.bytes += bytes;
      txn.queue.push(argv);
    }
  }
  if (refusal !== null) {
    txn.dirty = true;
    const text = refusal;
    answer(conn, out, (o) => o.error(text));
  } else answer(conn, out, (o) => o.simple("QUEUED"));
  return TXN_HANDLED;
}

function spec(name: string, arity: number, flags: CommandSpec<ServerCtx>["flags"], keys: boolean, exec: CommandSpec<ServerCtx>["exec"]): CommandSpec<ServerCtx> {
  return { name, arity, flags: ["connection", "loading-ok", ...flags], firstKey: keys ? 1 : 0, lastKey: keys ? -1 : 0, keyStep: keys ? 1 : 0, exec };
}

/** The transaction commands as the table runs them (what interceptTxn passes on). */
export const TXN_COMMANDS: readonly CommandSpec<ServerCtx>[] = [
  // Handled by interceptTxn; what reaches the table is a MULTI whose arity is wrong.
  spec("multi", 1, ["fast", "noquorum-ok"], false, (_ctx, _argv, out) => out.ok()),
  spec("exec", 1, ["noquorum-ok"], false, (_ctx, _argv, out) => out.error("ERR EXEC without MULTI")),
  spec("discard", 1, ["fast", "noquorum-ok"], false, (_ctx, _argv, out) => out.error("ERR DISCARD without MULTI")),
  spec("watch", -2, ["fast"], true, (ctx, argv, out) => {
    const txn = (ctx.conn.txn ??= new ConnTxn());
    if (txn.watchPending > 0) txn.watchPending--;
    if (txn.watched.size + argv.length - 1 > TXN_WATCH_KEYS_MAX) {
      out.error(`ERR WATCH past ${TXN_WATCH_KEYS_MAX} keys`);
      return;
    }
    // The index of the last change this node's state holds: every key's revision is at most it.
    const w = ctx.db.rev;
    for (let i = 1; i < argv.length; i++) {
      const k = argv[i]!;
      if (!txn.watched.has(k)) txn.watched.set(k, [w, ctx.db.has(k, ctx.nowMs)]);
    }
    out.ok();
  }),
  spec("unwatch", 1, ["fast", "noquorum-ok"], false, (ctx, _argv, out) => {
    const txn = ctx.conn.txn;
    if (txn !== null) {
      if (txn.watchPending > 0) txn.watchPending--;
      txn.watched.clear();
    }
    out.ok();
  }),
];
