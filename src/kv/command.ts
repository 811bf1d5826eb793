// The shape of a command-table entry, shared by the KV state machine and the server's
// connection commands. The table is data; dispatch looks a name up, checks arity, calls exec.
import type { ReplyWriter } from "../resp/encode.ts";

export type CommandFlag =
  | "write" // changes the keyspace: goes through the log
  | "readonly" // reads the keyspace
  | "fast" // O(1) or O(log n)
  | "admin"
  | "connection" // about the connection itself (HELLO, CLIENT, SELECT...): never logged
  | "pubsub"
  | "logged" // changes no key, yet goes through the log (PUBLISH: delivered by every member in log order)
  | "loading-ok" // allowed while the node is loading its data
  | "noquorum-ok"; // answered locally even without a leader

export interface CommandSpec<Ctx> {
  /** Lower-case name, as in `COMMAND` replies. */
  readonly name: string;
  /** Redis's convention: n > 0 means exactly n words (with the name); n < 0 means at least -n. */
  readonly arity: number;
  readonly flags: readonly CommandFlag[];
  /** Key positions (1-based, Redis's COMMAND convention); 0 when the command takes no keys; lastKey -1 = last arg. */
  readonly firstKey: number;
  readonly lastKey: number;
  readonly keyStep: number;
  /** Runs the command: argv[0] is the name as sent; all words are byte strings. Writes exactly one reply. */
  exec(ctx: Ctx, argv: string[], out: ReplyWriter): void;
}

/** Checks a command's word count against its arity. */
export function arityOk(arity: number, argc: number): boolean {
  return arity >= 0 ? argc === arity : argc >= -arity;
}

/** Builds a case-insensitive lookup over a table: exact lower and upper case hit a Map directly. */
export function commandLookup<Ctx>(specs: readonly CommandSpec<Ctx>[]): (name: string) => CommandSpec<Ctx> | undefined {
  const byName = new Map<string, CommandSpec<Ctx>>();
  for (const s of specs) {
    byName.set(s.name, s);
    byName.set(s.name.toUpperCase(), s);
  }
  return (name) => byName.get(name) ?? byName.get(name.toLowerCase());
}

/** Redis 7's text for an unknown command: the name and up to ~128 bytes of its arguments. */
export function unknownCommandError(argv: readonly string[]): string {
  let args = "";
  for (let i = 1; i < argv.length && args.length < 128; i++) {
    args += `'${argv[i]!.slice(0, 128 - args.length)}' `;
  }
  return `ERR unknown command '${argv[0]!.slice(0, 128)}', with args beginning with: ${args}`;
}
