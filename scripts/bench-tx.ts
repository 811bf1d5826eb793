// Transactions: `MULTI; SET x10; EXEC` against the same 10 SETs pipelined, on one durable kv node
// (`kv serve`, --fsync always) and on Debian's redis-server (appendonly yes, appendfsync always) in
// the same run.
//
//   bun scripts/bench-tx.ts [--clients 8] [--seconds 5] [--rounds 3] [--kv-bin ./kv]
//
// Each client is a closed loop over its own connection: it writes one batch (MULTI, 10 SETs of
// random keys among 10 000 with 16-byte values, EXEC; or the 10 SETs alone), waits for every reply,
// and sends the next. Batches per second (10 SETs each) are summed over the clients. The modes and
// servers alternate within each round; medians over the rounds are printed with the ratios
// EXEC/pipelined per server and kv/redis per mode. Free 127.0.0.1 ports, temp dirs removed on exit.
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { freePort, installCleanupHandlers, machineDescription, makeTempDir, median, printTable, startServer, fmtNum, type Server } from "./bench-lib.ts";

const { values: args } = parseArgs({
  options: {
    clients: { type: "string", default: "8" },
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "3" },
    "kv-bin": { type: "string", default: "./kv" },
  },
});
const CLIENTS = Number(args.clients);
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const KEYS = 10_000;
const VALUE = "v".repeat(16);

type Mode = "exec" | "pipelined";

function bulk(s: string): string {
  return `$${s.length}\r\n${s}\r\n`;
}
function cmd(...words: string[]): string {
  return `*${words.length}\r\n${words.map(bulk).join("")}`;
}

/** One batch's bytes and the reply lines it gets (every reply here is one line or an array header of such). */
function batch(mode: Mode, rand: () => number): { wire: string; lines: number } {
  let sets = "";
  for (let i = 0; i < 10; i++) sets += cmd("SET", `key:${Math.floor(rand() * KEYS)}`, VALUE);
  // exec: +OK, 10 x +QUEUED, *10 and 10 x +OK; pipelined: 10 x +OK.
  return mode === "exec" ? { wire: cmd("MULTI") + sets + cmd("EXEC"), lines: 22 } : { wire: sets, lines: 10 };
}

/** Runs CLIENTS closed loops for SECONDS; returns batches per second. */
async function load(port: number, mode: Mode): Promise<number> {
  const deadline = performance.now() + SECONDS * 1000;
  let batches = 0;
  const one = async (seed: number): Promise<void> => {
    let x = seed;
    const rand = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
    let want = 0;
    let seen = 0;
    let tail = "";
    let wake: (() => void) | null = null;
    let failed: Error | null = null;
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data(_s, chunk) {
          const text = tail + Buffer.from(chunk).toString("latin1");
          let p = 0;
          for (let i = text.indexOf("\r\n"); i >= 0; i = text.indexOf("\r\n", p)) {
            if (text[p] === "-") failed = new Error(`error reply: ${text.slice(p, i)}`);
            seen++;
            p = i + 2;
          }
          tail = text.slice(p);
          if (seen >= want) wake?.();
        },
        close() {
          failed ??= new Error("connection closed");
          wake?.();
        },
      },
    });
    try {
      for (let n = 0; n < 10_000_000 && performance.now() < deadline; n++) {
        const b = batch(mode, rand);
        want = seen + b.lines;
        const done = new Promise<void>((r) => (wake = r));
        socket.write(b.wire);
        await done;
        if (failed !== null) throw failed;
        batches++;
      }
    } finally {
      socket.end();
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => one(i + 1)));
  return batches / ((performance.now() - t0) / 1000);
}

installCleanupHandlers();
const dir = makeTempDir("kv-bench-tx-");
const kvPort = freePort();
const kv = await startServer("kv", [resolve(args["kv-bin"]), "serve", "--port", String(kvPort), "--data-dir", `${dir}/kv`, "--fsync", "always", "--log-level", "warn"], kvPort, dir);
const redisPort = freePort();
const redis = await startServer(
  "redis",
  ["redis-server", "--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir, "--daemonize", "no"],
  redisPort,
  dir,
);

console.log(`bench-tx: ${CLIENTS} clients, ${SECONDS} s per measurement, ${ROUNDS} rounds; ${machineDescription()}`);
const results = new Map<string, number[]>();
const servers: [string, Server][] = [
  ["kv", kv],
  ["redis", redis],
];
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, s] of servers) {
    for (const mode of (r % 2 === 0 ? ["exec", "pipelined"] : ["pipelined", "exec"]) as Mode[]) {
      const v = await load(s.port, mode);
      const key = `${name} ${mode}`;
      results.set(key, [...(results.get(key) ?? []), v]);
      console.log(`round ${r + 1}: ${key}: ${fmtNum(v, 0)} batches/s`);
    }
  }
}
const med = (k: string) => median(results.get(k)!);
printTable(
  ["server", "EXEC of 10 SETs (batches/s)", "10 SETs pipelined (batches/s)", "EXEC / pipelined"],
  servers.map(([n]) => [n, fmtNum(med(`${n} exec`), 0), fmtNum(med(`${n} pipelined`), 0), fmtNum(med(`${n} exec`) / med(`${n} pipelined`), 2)]),
);
console.log(`kv / redis: EXEC ${fmtNum(med("kv exec") / med("redis exec"), 2)}, pipelined ${fmtNum(med("kv pipelined") / med("redis pipelined"), 2)}`);
await kv.stop();
await redis.stop();
