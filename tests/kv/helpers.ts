// Test helper: runs commands through the KV command table the way dispatch does (lookup,
// arity check, exec) and returns the exact reply bytes as a latin1 string.
import { arityOk } from "../../src/kv/command.ts";
import { lookupKvCommand } from "../../src/kv/commands.ts";
import { Db } from "../../src/kv/db.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";

export const T0 = 1_700_000_000_000;

export class Kv {
  readonly out = new ReplyBuffer(64);
  nowMs = T0;

  constructor(readonly db = new Db()) {}

  /** Runs one command in RESP2 and returns its reply bytes. */
  run(...argv: string[]): string {
    return this.exec(2, argv);
  }

  /** Runs one command in RESP3 and returns its reply bytes. */
  run3(...argv: string[]): string {
    return this.exec(3, argv);
  }

  /** Runs one command at a given time. */
  at(nowMs: number, ...argv: string[]): string {
    this.nowMs = nowMs;
    return this.exec(2, argv);
  }

  private exec(proto: 2 | 3, argv: string[]): string {
    const out = this.out;
    out.reset();
    out.proto = proto;
    const spec = lookupKvCommand(argv[0]!);
    if (spec === undefined) throw new Error(`unknown command ${argv[0]}`);
    if (!arityOk(spec.arity, argv.length)) out.error(`ERR wrong number of arguments for '${spec.name}' command`);
    else spec.exec({ db: this.db, nowMs: this.nowMs }, argv, out);
    return out.view().toString("latin1");
  }
}

/** RESP2 bulk string. */
export function bulk(s: string): string {
  return `$${s.length}\r\n${s}\r\n`;
}

/** RESP2 array of bulk strings. */
export function bulks(...items: string[]): string {
  return `*${items.length}\r\n${items.map(bulk).join("")}`;
}

/** mulberry32: a seeded generator so randomized tests are reproducible. */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
