// Transactions and revisions in the state machine: `KV.TXN`, the log form of a MULTI/EXEC
// transaction (one entry, applied whole on every replica), its read-only twin `KV.TXNREAD`
// (run on a node's own state after a read barrier), and `KV.REV key`. Pure.
//
// KV.TXN <watchCount> [<key> <w> <0|1>]... [<argc> <word>...]...
//   each watched key with w, the log index as of which WATCH observed it (the node's applied
//   index then), and 1 when it was live at w, 0 when absent; then the queued commands, each as
//   its word count and its words. The transaction runs only if no watched key changed after its
//   w (Db.changedSince); else its reply is the null array, as EXEC's in Redis.
import type { ReplyWriter } from "../resp/encode.ts";
import { arityOk, commandLookup, unknownCommandError, type CommandSpec } from "./command.ts";
import type { KvCtx } from "./commands.ts";

type Lookup = (name: string) => CommandSpec<KvCtx> | undefined;

/** Commands one transaction may queue (past it, MULTI's queue answers an error). */
export const TXN_COMMANDS_MAX = 10_000;
/** Keys one connection may WATCH at once. */
export const TXN_WATCH_KEYS_MAX = 10_000;

export interface TxnBody {
  /** Watched keys, the index WATCH observed each at, and whether it was live then. */
  readonly watched: readonly (readonly [key: string, w: number, live: boolean])[];
  /** Queued commands (each a non-empty argv). */
  readonly commands: readonly string[][];
}

/** The argv of KV.TXN (or KV.TXNREAD with `name`) for a transaction. */
export function encodeTxn(t: TxnBody, name = "KV.TXN"): string[] {
  const argv = [name, String(t.watched.length)];
  for (const [k, w, live] of t.watched) argv.push(k, String(w), live ? "1" : "0");
  for (const c of t.commands) {
    argv.push(String(c.length));
    for (const word of c) argv.push(word);
  }
  return argv;
}

function count(s: string | undefined, max: number): number | null {
  if (s === undefined || !/^\d{1,16}$/.test(s)) return null;
  const n = Number(s);
  return n <= max ? n : null;
}

/** Parses a KV.TXN argv; a string (the error) when it is not well formed. */
export function decodeTxn(argv: readonly string[]): TxnBody | string {
  const bad = "ERR malformed transaction";
  const n = count(argv[1], TXN_WATCH_KEYS_MAX);
  if (n === null) return bad;
  let i = 2;
  const watched: [string, number, boolean][] = [];
  for (let j = 0; j < n; j++) {
    const k = argv[i];
    const w = count(argv[i + 1], Number.MAX_SAFE_INTEGER);
    const live = argv[i + 2];
    if (k === undefined || w === null || (live !== "0" && live !== "1")) return bad;
    watched.push([k, w, live === "1"]);
    i += 3;
  }
  const commands: string[][] = [];
  while (i < argv.length) {
    const c = count(argv[i], argv.length - i - 1);
    if (c === null || c === 0 || commands.length >= TXN_COMMANDS_MAX) return bad;
    commands.push(argv.slice(i + 1, i + 1 + c));
    i += 1 + c;
  }
  return { watched, commands };
}

/** True when some watched key may have changed after the index WATCH observed it at. */
export function watchBroken(ctx: KvCtx, t: TxnBody): boolean {
  for (const [k, w, live] of t.watched) if (ctx.db.changedSince(k, live, w, ctx.nowMs)) return true;
  return false;
}

/**
 * Runs a transaction: the null array if a watched key changed, else an array of each command's
 * reply in order (an error from one does not stop the rest, as in Redis). `readOnly`: every
 * command must be a read (KV.TXNREAD runs on a node's own state and must not change it).
 */
export function execTxn(lookup: Lookup, ctx: KvCtx, argv: string[], out: ReplyWriter, readOnly: boolean): void {
  const t = decodeTxn(argv);
  if (typeof t === "string") {
    out.error(t);
    return;
  }
  // Checked whole before anything runs: the entry is applied all or nothing.
  for (const c of t.commands) {
    const spec = txnLookup(lookup, c[0]!);
    if (spec === undefined || !arityOk(spec.arity, c.length) || TXN_NAMES.has(spec.name) || (readOnly && !spec.flags.includes("readonly"))) {
      out.error(spec === undefined ? unknownCommandError(c) : `ERR command '${spec.name}' is not allowed in this transaction`);
      return;
    }
  }
  if (watchBroken(ctx, t)) {
    out.nilArray();
    return;
  }
  out.array(t.commands.length);
  for (const c of t.commands) {
    const spec = txnLookup(lookup, c[0]!)!;
    ctx.beforeCommand?.(spec, c);
    spec.exec(ctx, c, out);
  }
}

const TXN_NAMES = new Set(["kv.txn", "kv.txnread"]);

/**
 * Commands outside the keyspace that Redis also runs inside a transaction, with the same replies
 * there: PING, ECHO and UNWATCH (whose effect EXEC has anyway). Pure, so they run in the entry too.
 */
export const TXN_EXTRA_COMMANDS: readonly CommandSpec<KvCtx>[] = [
  spec("ping", -1, ["readonly", "fast"], (_ctx, argv, out) => {
    if (argv.length > 2) out.error("ERR wrong number of arguments for 'ping' command");
    else if (argv.length === 2) out.bulk(argv[1]!);
    else out.simple("PONG");
  }),
  spec("echo", 2, ["readonly", "fast"], (_ctx, argv, out) => out.bulk(argv[1]!)),
  spec("unwatch", 1, ["readonly", "fast"], (_ctx, _argv, out) => out.ok()),
];
const extraLookup = commandLookup(TXN_EXTRA_COMMANDS);

/** A command a transaction may run: the keyspace's table, then TXN_EXTRA_COMMANDS. */
export function txnLookup(lookup: Lookup, name: string): CommandSpec<KvCtx> | undefined {
  return lookup(name) ?? extraLookup(name);
}

function spec(name: string, arity: number, flags: CommandSpec<KvCtx>["flags"], exec: CommandSpec<KvCtx>["exec"]): CommandSpec<KvCtx> {
  return { name, arity, flags, firstKey: 0, lastKey: 0, keyStep: 0, exec };
}

/** The table's entries for transactions and revisions; `lookup` finds the commands a transaction runs. */
export function txnKvCommands(lookup: Lookup): CommandSpec<KvCtx>[] {
  return [
  spec("kv.txn", -2, ["write"], (ctx, argv, out) => execTxn(lookup, ctx, argv, out, false)),
  spec("kv.txnread", -2, ["readonly"], (ctx, argv, out) => execTxn(lookup, ctx, argv, out, true)),
  // The revision of a key: the log index of its last change (0 when missing or expired).
  { name: "kv.rev", arity: 2, flags: ["readonly", "fast"], firstKey: 1, lastKey: 1, keyStep: 1, exec: (ctx, argv, out) => out.int(ctx.db.revOf(argv[1]!, ctx.nowMs)) },
  ];
}
