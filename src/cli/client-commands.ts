// Client subcommands: kv get/set/del/ttl/keys/incr/ping and the interactive kv cli.
//
// Exit codes: 0 done; 1 nothing there (get of a missing key, set refused by NX/XX) or bad
// usage; 2 the server answered with an error; 3 no answer (unreachable, timeout, outcome unknown).
import type { ArgsDef, CommandDef } from "citty";
import { defineCommand } from "citty";
import { type Client, ClientError, createClient, ServerError } from "../client/index.ts";
import { CLIENT_TLS_ARGS, cliTls, useTlsArgs } from "./cli-tls.ts";
import type { RespValue } from "../resp/reply-parser.ts";
import { toJson } from "./client-format.ts";
import { checkArgs } from "./strict.ts";
import { authArgs, cliAuth, setCliAuth } from "./cli-auth.ts";

export const EXIT_OK = 0;
export const EXIT_NIL = 1;
export const EXIT_SERVER_ERROR = 2;
export const EXIT_NO_ANSWER = 3;

export const DEFAULT_ADDR = "127.0.0.1:6379";

export const connArgs = {
  addr: { type: "string", description: `Server address host:port (env KV_ADDR; default ${DEFAULT_ADDR})`, valueHint: "host:port" },
  timeout: { type: "string", description: "Per-call timeout in milliseconds (default 5000)", valueHint: "ms" },
  ...CLIENT_TLS_ARGS,
  ...authArgs,
} as const satisfies ArgsDef;

const jsonArg = { json: { type: "boolean", description: "Print JSON (for scripts)" } } as const satisfies ArgsDef;

export function resolveAddr(flag: string | undefined): string {
  const a = flag ?? process.env.KV_ADDR;
  return a === undefined || a.trim() === "" ? DEFAULT_ADDR : a.trim();
}

/** Prints one line to stderr and exits with `code`. */
export function die(code: number, message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

export function openClient(args: { addr?: string; timeout?: string }): Client {
  const addr = resolveAddr(args.addr);
  let timeoutMs = 5000;
  if (args.timeout !== undefined) {
    timeoutMs = Number(args.timeout);
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) die(EXIT_NIL, `kv: bad --timeout ${JSON.stringify(args.timeout)}: expected milliseconds`);
  }
  try {
    return createClient({ ...cliTls(), addrs: addr, timeoutMs, connectTimeoutMs: Math.min(2000, timeoutMs), failFast: true, ...cliAuth() });
  } catch (e) {
    die(EXIT_NIL, `kv: ${(e as Error).message}`);
  }
}

/** Maps a client error to a one-line message and an exit code. */
export function reportError(e: unknown): never {
  if (e instanceof ServerError) die(EXIT_SERVER_ERROR, `(error) ${e.reply}`);
  if (e instanceof ClientError) die(EXIT_NO_ANSWER, `kv: ${e.message}`);
  die(EXIT_NO_ANSWER, `kv: ${e instanceof Error ? e.message : String(e)}`);
}

async function writeOut(data: string | Uint8Array): Promise<void> {
  await Bun.write(Bun.stdout, data);
}

/** Runs one call with a fresh client, closes it, and maps errors to exit codes. */
async function withClient<T>(args: { addr?: string; timeout?: string; user?: string; pass?: string; askpass?: boolean }, fn: (c: Client) => Promise<T>): Promise<T> {
  await setCliAuth(args);
  const client = openClient(args);
  try {
    return await fn(client);
  } catch (e) {
    client.destroy();
    reportError(e);
  } finally {
    await client.close();
  }
}

function positionals(args: { _: string[] }, min: number, usage: string): string[] {
  const p = args._;
  if (p.length < min) die(EXIT_NIL, `kv: missing arguments; usage: ${usage}`);
  return p;
}

function finish(code: number): void {
  process.exitCode = code;
}

function numberFlag(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) die(EXIT_NIL, `kv: bad --${name} ${JSON.stringify(v)}: expected an integer`);
  return n;
}

const get = defineCommand({
  meta: { name: "get", description: "Print a key's value (raw bytes); exit 1 if the key does not exist" },
  args: { ...connArgs, ...jsonArg, KEY: { type: "positional", description: "Key", required: true } },
  async run({ args }) {
    const v = await withClient(args, (c) => c.getBuffer(args.KEY));
    if (v === null) return finish(EXIT_NIL);
    if (args.json) await writeOut(JSON.stringify(Buffer.from(v).toString("utf8")) + "\n");
    else await writeOut(process.stdout.isTTY ? Buffer.concat([v, Buffer.from("\n")]) : v);
    finish(EXIT_OK);
  },
});

const set = defineCommand({
  meta: { name: "set", description: "Set a key; prints OK (exit 1 if --nx/--xx prevented it)" },
  args: {
    ...connArgs,
    ...jsonArg,
    KEY: { type: "positional", description: "Key", required: true },
    value: { type: "positional", description: "Value (or --stdin)", required: false },
    ex: { type: "string", description: "Expire after seconds", valueHint: "seconds" },
    px: { type: "string", description: "Expire after milliseconds", valueHint: "ms" },
    exat: { type: "string", description: "Expire at Unix time (seconds)", valueHint: "unix-s" },
    pxat: { type: "string", description: "Expire at Unix time (milliseconds)", valueHint: "unix-ms" },
    keepttl: { type: "boolean", description: "Keep the current time to live" },
    nx: { type: "boolean", description: "Only set if the key does not exist" },
    xx: { type: "boolean", description: "Only set if the key exists" },
    stdin: { type: "boolean", description: "Read the value from standard input (binary-safe)" },
  },
  async run({ args }) {
    if (args.nx && args.xx) die(EXIT_NIL, "kv: --nx and --xx exclude each other");
    let value: string | Uint8Array;
    if (args.stdin) value = new Uint8Array(await Bun.stdin.arrayBuffer());
    else if (args.value === undefined) die(EXIT_NIL, "kv: missing VALUE; usage: kv set KEY VALUE [--ex S] [--px MS] [--nx|--xx] (or --stdin)");
    else value = args.value;
    const opts = {
      ex: numberFlag(args.ex, "ex"),
      px: numberFlag(args.px, "px"),
      exat: numberFlag(args.exat, "exat"),
      pxat: numberFlag(args.pxat, "pxat"),
      keepTtl: args.keepttl,
      nx: args.nx,
      xx: args.xx,
    };
    const ok = await withClient(args, (c) => c.set(args.KEY, value, opts));
    if (!ok) {
      if (args.json) await writeOut("null\n");
      return finish(EXIT_NIL);
    }
    await writeOut(args.json ? '"OK"\n' : "OK\n");
    finish(EXIT_OK);
  },
});

const del = defineCommand({
  meta: { name: "del", description: "Delete keys; prints how many existed" },
  args: { ...connArgs, ...jsonArg, KEY: { type: "positional", description: "Keys (one or more)", required: true } },
  async run({ args }) {
    const keys = positionals(args, 1, "kv del KEY [KEY...]");
    const n = await withClient(args, (c) => c.del(...keys));
    await writeOut(`${n}\n`);
    finish(EXIT_OK);
  },
});

const ttl = defineCommand({
  meta: { name: "ttl", description: "Print seconds to live (-1 no expiry, -2 no such key)" },
  args: {
    ...connArgs,
    ...jsonArg,
    KEY: { type: "positional", description: "Key", required: true },
    ms: { type: "boolean", description: "Milliseconds (PTTL)" },
  },
  async run({ args }) {
    const n = await withClient(args, (c) => (args.ms ? c.pttl(args.KEY) : c.ttl(args.KEY)));
    await writeOut(`${n}\n`);
    finish(EXIT_OK);
  },
});

const keys = defineCommand({
  meta: { name: "keys", description: "List keys matching a glob pattern (default *), one per line" },
  args: { ...connArgs, ...jsonArg, pattern: { type: "positional", description: "Glob pattern", required: false, default: "*" } },
  async run({ args }) {
    const list = (await withClient(args, (c) => c.command(["KEYS", args.pattern ?? "*"], { mode: "bytes" }))) as Uint8Array[];
    if (args.json) {
      await writeOut(JSON.stringify(list.map((k) => Buffer.from(k).toString("utf8"))) + "\n");
    } else {
      const parts: Uint8Array[] = [];
      for (const k of list) parts.push(k, Buffer.from("\n"));
      if (parts.length > 0) await writeOut(Buffer.concat(parts));
    }
    finish(EXIT_OK);
  },
});

const incr = defineCommand({
  meta: { name: "incr", description: "Increment an integer value; prints the new value" },
  args: { ...connArgs, ...jsonArg, KEY: { type: "positional", description: "Key", required: true }, by: { type: "string", description: "Increment (INCRBY)", valueHint: "n" } },
  async run({ args }) {
    const by = numberFlag(args.by, "by");
    const v = await withClient(args, (c) => c.command(by === undefined ? ["INCR", args.KEY] : ["INCRBY", args.KEY, by]));
    await writeOut(`${String(v)}\n`);
    finish(EXIT_OK);
  },
});

const ping = defineCommand({
  meta: { name: "ping", description: "Check that the server answers; prints PONG" },
  args: { ...connArgs, ...jsonArg, message: { type: "positional", description: "Message to echo", required: false } },
  async run({ args }) {
    const started = performance.now();
    const v = await withClient(args, (c) => c.ping(args.message));
    if (args.json) await writeOut(JSON.stringify({ reply: v, addr: resolveAddr(args.addr), ms: Math.round((performance.now() - started) * 1000) / 1000 }) + "\n");
    else await writeOut(`${v}\n`);
    finish(EXIT_OK);
  },
});

const cli = defineCommand({
  meta: { name: "cli", description: "Interactive prompt (like redis-cli); with a command, runs it once" },
  args: {
    ...connArgs,
    ...jsonArg,
    raw: { type: "boolean", description: "Print bare values (redis-cli --raw)" },
    command: { type: "positional", description: "Command and arguments to run once", required: false },
  },
  async run({ args }) {
    await setCliAuth(args);
    const { runCli } = await import("./client-repl.ts");
    const code = await runCli({ addr: resolveAddr(args.addr), timeout: args.timeout, json: args.json ?? false, raw: args.raw ?? false, words: args._ });
    finish(code);
  },
});

/** Prints a reply for scripts (`--json`). */
export function jsonLine(v: RespValue): string {
  return JSON.stringify(toJson(v)) + "\n";
}

/** The command with its command line checked first: an unknown flag is an error, not ignored. */
function strict<T extends CommandDef<any>>(name: string, cmd: T): T {
  const run = cmd.run!;
  return {
    ...cmd,
    run(ctx: Parameters<NonNullable<T["run"]>>[0]) {
      const bad = checkArgs(ctx.rawArgs, cmd.args as ArgsDef);
      if (bad !== null) die(EXIT_NIL, `kv: ${bad} (see kv ${name} --help)`);
      try {
        useTlsArgs(ctx.args as Parameters<typeof useTlsArgs>[0]);
      } catch (e) {
        die(EXIT_NIL, `kv: ${(e as Error).message}`);
      }
      return run(ctx);
    },
  };
}

export const clientCommands: Record<string, CommandDef<any>> = Object.fromEntries(
  Object.entries({ get, set, del, ttl, keys, incr, ping, cli }).map(([name, cmd]) => [name, strict(name, cmd as CommandDef<any>)]),
);
