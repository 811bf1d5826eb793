// `kv cli`: a redis-cli-like prompt with history, or one command run once.
import { appendFileSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { ClientError, createClient, ServerError } from "../client/index.ts";
import { cliTls } from "./cli-tls.ts";
import { cliAuth } from "./cli-auth.ts";
import { EXIT_NIL, EXIT_NO_ANSWER, EXIT_OK, EXIT_SERVER_ERROR } from "./client-commands.ts";
import { formatRaw, formatReply, SplitArgsError, splitArgs, toJson } from "./client-format.ts";
import { replHelp } from "./client-help.ts";
import type { RespValue } from "../resp/reply-parser.ts";

export interface CliOptions {
  addr: string;
  timeout?: string;
  json: boolean;
  raw: boolean;
  /** A command to run once; empty for the prompt. */
  words: string[];
}

const HISTORY_MAX = 1000;

function historyFile(): string {
  return process.env.KV_HISTFILE ?? join(homedir(), ".kv_history");
}

function loadHistory(): string[] {
  try {
    const lines = readFileSync(historyFile(), "utf8").split("\n").filter((l) => l !== "");
    // readline wants the newest first.
    return lines.slice(-HISTORY_MAX).reverse();
  } catch {
    return [];
  }
}

function render(v: RespValue, opts: CliOptions): string | Uint8Array {
  if (opts.json) return JSON.stringify(toJson(v)) + "\n";
  if (opts.raw) return formatRaw(v);
  return formatReply(v);
}

/** Runs the prompt (or one command); returns the exit code. */
export async function runCli(opts: CliOptions): Promise<number> {
  const timeoutMs = opts.timeout === undefined ? 5000 : Number(opts.timeout);
  const client = createClient({ ...cliTls(), addrs: opts.addr, timeoutMs, connectTimeoutMs: Math.min(2000, timeoutMs), failFast: true, ...cliAuth() });

  const run = async (words: Uint8Array[]): Promise<{ out: string | Uint8Array; code: number }> => {
    try {
      const v = await client.command(words, { mode: "bytes" });
      return { out: render(v, opts), code: EXIT_OK };
    } catch (e) {
      if (e instanceof ServerError) {
        return { out: opts.json ? JSON.stringify({ error: e.reply }) + "\n" : `(error) ${e.reply}\n`, code: EXIT_SERVER_ERROR };
      }
      if (e instanceof ClientError) return { out: `(error) ${e.message}\n`, code: EXIT_NO_ANSWER };
      if (e instanceof TypeError) return { out: `(error) ${e.message}\n`, code: EXIT_NIL };
      throw e;
    }
  };

  if (opts.words.length > 0) {
    const words = opts.words.map((w) => Buffer.from(w, "utf8"));
    const { out, code } = await run(words);
    if (code === EXIT_NO_ANSWER) process.stderr.write(`kv: ${typeof out === "string" ? out.replace(/^\(error\) /, "") : out}`);
    else await Bun.write(Bun.stdout, out);
    client.destroy();
    return code;
  }

  const tty = process.stdin.isTTY === true;
  const rl = createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal: tty,
    historySize: HISTORY_MAX,
    history: tty ? loadHistory() : [],
    prompt: tty ? `${opts.addr}> ` : "",
  } as Parameters<typeof createInterface>[0]);
  let last = EXIT_OK;
  if (tty) rl.prompt();
  for await (const line of rl) {
    const trimmed = line.trim();
    if (trimmed === "") {
      if (tty) rl.prompt();
      continue;
    }
    if (tty) {
      try {
        appendFileSync(historyFile(), `${trimmed}\n`);
      } catch {
        // History is a convenience: a read-only home must not break the prompt.
      }
    }
    const lower = trimmed.toLowerCase();
    if (lower === "quit" || lower === "exit") break;
    const help = replHelp(trimmed);
    if (help !== null) {
      await Bun.write(Bun.stdout, help);
      if (tty) rl.prompt();
      continue;
    }
    let words: Uint8Array[];
    try {
      words = splitArgs(trimmed);
    } catch (e) {
      if (!(e instanceof SplitArgsError)) throw e;
      await Bun.write(Bun.stdout, `${e.message}\n`);
      if (tty) rl.prompt();
      continue;
    }
    const { out, code } = await run(words);
    last = code;
    await Bun.write(Bun.stdout, out);
    if (tty) rl.prompt();
  }
  rl.close();
  await client.close();
  return tty ? EXIT_OK : last;
}
