// Nothing from a socket reaches a throw that nobody catches: random and mutated RESP, in process
// (parser + dispatch, thousands of inputs a second) and against the real binary from many
// connections at once. Seeded: a failure prints SEED=...; `SEED=<n> bun test tests/fuzz` replays
// it. CI: at most 60,000 inputs or 12 s in process, 800 rounds or 45 s over sockets.
// FUZZ_SECONDS=<s> runs each layer that long (scripts/fuzz.ts). A client that half-closes must get
// every reply it is owed (FUZZ_HALFCLOSE_REPLIES=0 leaves that check out).
import { describe, expect, test } from "bun:test";
import type { RequestLimits } from "../../src/resp/request-parser.ts";
import { startKv } from "../helpers/server.ts";
import type { GenLimits } from "./gen.ts";
import { runInprocFuzz } from "./inproc-fuzz.ts";
import { runSocketFuzz } from "./socket-fuzz.ts";

const SEED = process.env.SEED !== undefined ? Number(process.env.SEED) : Math.floor(Math.random() * 2 ** 31);
const LONG_MS = process.env.FUZZ_SECONDS !== undefined ? Number(process.env.FUZZ_SECONDS) * 1000 : 0;

/**
 * The server runs with small limits so the RSS bound means something: a bulk string of at most
 * 256 KiB, 1 MiB buffered for one unfinished command, 1 MiB of unsent replies per client.
 */
const LIMITS: RequestLimits = { protoMaxBulkLen: 256 * 1024, multibulkArgsMax: 1024 * 1024, queryBufferBytesMax: 1024 * 1024 };
const SERVER_FLAGS = ["--proto-max-bulk-len", String(LIMITS.protoMaxBulkLen), "--client-query-buffer-limit", String(LIMITS.queryBufferBytesMax), "--client-output-buffer-limit", "1048576", "--snapshot-log-bytes", "4mb", "--wal-segment-bytes", "2mb"];
const GEN: GenLimits = { protoMaxBulkLen: LIMITS.protoMaxBulkLen, valueBytesMax: LIMITS.protoMaxBulkLen };

/**
 * The server's resident memory under the fuzzer stays below this. Measured peak: ~90 MB (the
 * runtime is ~60 MB of it); the keyspace is ~30 keys of at most a few MB (FLUSHALL comes often),
 * and each of up to 32 clients may hold 1 MiB of input and 1 MiB of replies: ~100 MB more.
 * A SETRANGE that builds a string past --proto-max-bulk-len (400 MB from 30 bytes) breaks it.
 */
const RSS_BYTES_MAX = 256 * 1024 * 1024;

describe("RESP fuzz", () => {
  test("in process: the parser throws only ProtocolError, splits do not change it, dispatch writes one reply and never throws", async () => {
    console.log(`in-process fuzz SEED=${SEED}`);
    const stats = await runInprocFuzz({ seed: SEED, inputsMax: LONG_MS > 0 ? 1e9 : 60_000, msMax: LONG_MS > 0 ? LONG_MS : 12_000, limits: LIMITS, gen: GEN });
    console.log(`in-process fuzz: ${JSON.stringify(stats)}`);
    expect(stats.inputs).toBeGreaterThan(0);
    expect(stats.commands).toBeGreaterThan(0);
  }, LONG_MS + 120_000);

  test("over sockets: the server never exits, answers or closes every connection, and its RSS stays bounded", async () => {
    console.log(`socket fuzz SEED=${SEED}`);
    const kv = await startKv(SERVER_FLAGS);
    let stats;
    try {
      stats = await runSocketFuzz(
        { port: kv.port, pid: kv.proc.pid, alive: () => kv.proc.exitCode === null && kv.proc.signalCode === null, output: kv.output },
        {
          seed: SEED,
          roundsMax: LONG_MS > 0 ? 1e9 : 800,
          msMax: LONG_MS > 0 ? LONG_MS : 45_000,
          limits: LIMITS,
          gen: GEN,
          rssBytesMax: RSS_BYTES_MAX,
          log: (l) => console.log(l),
          halfCloseReplies: process.env.FUZZ_HALFCLOSE_REPLIES !== "0",
        },
      );
    } catch (e) {
      await kv.stop({ signal: "SIGKILL" });
      throw e; // the failure, with its seed and the server's output
    }
    console.log(`socket fuzz: ${JSON.stringify(stats)}`);
    expect(stats.rounds).toBeGreaterThan(0);
    expect(stats.rssPeakBytes).toBeLessThan(RSS_BYTES_MAX);
    // A clean stop after the fuzzing: exit 0 (not 70, the code of an internal error).
    expect(await kv.stop()).toBe(0);
  }, LONG_MS + 120_000);
});
