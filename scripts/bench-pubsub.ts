#!/usr/bin/env bun
// Pub/sub fan-out: messages delivered per second with 1 publisher and N subscribers (default 100)
// on one channel, kv (a one-member group: every PUBLISH is a log entry) against redis-server in
// the same run; prints kv/redis. The publisher keeps --window PUBLISHes in flight; a message counts
// once a subscriber received it (bytes received / frame size).
//
//   bun scripts/bench-pubsub.ts [--rounds 3] [--seconds 3] [--subscribers 100] [--window 64]
//                               [--payload 32] [--kv-args "--fsync everysec"]
import { parseArgs } from "node:util";
import { join } from "node:path";
import type { Socket } from "bun";
import { fmtNum, fmtOps, freePort, installCleanupHandlers, machineDescription, makeTempDir, median, printTable, runCleanups, sleep, splitCommandLine, startServer, type Server } from "./bench-lib.ts";

const { values: opt } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "3" },
    subscribers: { type: "string", default: "100" },
    window: { type: "string", default: "64" },
    payload: { type: "string", default: "32" },
    "kv-args": { type: "string", default: "" },
  },
});
const ROUNDS = Number(opt.rounds);
const SECONDS = Number(opt.seconds);
const SUBS = Number(opt.subscribers);
const WINDOW = Number(opt.window);
const PAYLOAD = "x".repeat(Number(opt.payload));
const CHANNEL = "bench";
const FRAME_BYTES = `*3\r\n$7\r\nmessage\r\n$${CHANNEL.length}\r\n${CHANNEL}\r\n$${PAYLOAD.length}\r\n${PAYLOAD}\r\n`.length;
const PUBLISH = Buffer.from(`*3\r\n$7\r\nPUBLISH\r\n$${CHANNEL.length}\r\n${CHANNEL}\r\n$${PAYLOAD.length}\r\n${PAYLOAD}\r\n`, "latin1");

installCleanupHandlers();
const ROOT = join(import.meta.dir, "..");

async function connect(port: number, onData: (n: number, chunk: Buffer) => void): Promise<Socket<undefined>> {
  return Bun.connect({ hostname: "127.0.0.1", port, socket: { data: (_s, chunk) => onData(chunk.length, chunk) } });
}

/** One measured run: delivered messages per second. */
async function fanout(port: number): Promise<{ deliveredPerSec: number; publishedPerSec: number }> {
  let received = 0;
  let confirmed = 0;
  const subs: Socket<undefined>[] = [];
  for (let i = 0; i < SUBS; i++) {
    let first = true;
    const s = await connect(port, (n, chunk) => {
      if (first) {
        // The subscribe confirmation: *3 $9 subscribe $5 bench :1
        first = false;
        confirmed++;
        const conf = `*3\r\n$9\r\nsubscribe\r\n$${CHANNEL.length}\r\n${CHANNEL}\r\n:1\r\n`.length;
        received += chunk.length - conf;
        return;
      }
      received += n;
    });
    s.write(`*2\r\n$9\r\nSUBSCRIBE\r\n$${CHANNEL.length}\r\n${CHANNEL}\r\n`);
    subs.push(s);
  }
  for (let i = 0; i < 500 && confirmed < SUBS; i++) await sleep(10);
  if (confirmed < SUBS) throw new Error(`only ${confirmed} of ${SUBS} subscribers confirmed`);
  let replies = 0;
  let pending = "";
  let sent = 0;
  let pub: Socket<undefined>;
  const stopAt = performance.now() + SECONDS * 1000;
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => (done = r));
  const pump = () => {
    while (sent - replies < WINDOW && performance.now() < stopAt) {
      pub.write(PUBLISH);
      sent++;
    }
    if (performance.now() >= stopAt && replies === sent) done();
  };
  pub = await connect(port, (_n, chunk) => {
    pending += chunk.toString("latin1");
    let p = 0;
    for (;;) {
      const e = pending.indexOf("\r\n", p);
      if (e < 0) break;
      if (pending[p] !== ":") throw new Error(`PUBLISH replied ${JSON.stringify(pending.slice(p, e))}`);
      replies++;
      p = e + 2;
    }
    pending = pending.slice(p);
    pump();
  });
  const t0 = performance.now();
  pump();
  const ticker = setInterval(pump, 5);
  await finished;
  clearInterval(ticker);
  // Every message published is delivered to every subscriber (bounded wait).
  const want = sent * SUBS * FRAME_BYTES;
  for (let i = 0; i < 1000 && received < want; i++) await sleep(5);
  const secs = (performance.now() - t0) / 1000;
  pub.end();
  for (const s of subs) s.end();
  if (received < want) throw new Error(`delivered ${received / FRAME_BYTES} of ${sent * SUBS} messages`);
  return { deliveredPerSec: received / FRAME_BYTES / secs, publishedPerSec: sent / secs };
}

async function start(which: "kv" | "redis"): Promise<Server> {
  const dir = makeTempDir(`bench-pubsub-${which}`);
  const port = freePort();
  const argv =
    which === "redis"
      ? ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir]
      : [join(ROOT, "kv"), "serve", "--port", String(port), "--data-dir", join(dir, "data"), "--log-level", "warn", ...splitCommandLine(opt["kv-args"]!)];
  return startServer(which, argv, port, dir, { cwd: dir });
}

console.log(`pub/sub fan-out: 1 publisher (${WINDOW} in flight), ${SUBS} subscribers, ${PAYLOAD.length}-byte messages, ${SECONDS} s x ${ROUNDS} rounds; ${machineDescription()}`);
const results: Record<"kv" | "redis", number[]> = { kv: [], redis: [] };
const published: Record<"kv" | "redis", number[]> = { kv: [], redis: [] };
try {
  for (let r = 0; r < ROUNDS; r++) {
    for (const which of ["redis", "kv"] as const) {
      const s = await start(which);
      try {
        const m = await fanout(s.port);
        results[which].push(m.deliveredPerSec);
        published[which].push(m.publishedPerSec);
      } finally {
        await s.stop();
      }
    }
  }
  const rows = (["redis", "kv"] as const).map((w) => [w, fmtOps(median(results[w])), fmtOps(median(published[w]))]);
  printTable(["server", "delivered msg/s (median)", "published/s"], rows);
  const ratio = median(results.kv) / median(results.redis);
  console.log(`kv/redis delivered: ${fmtNum(ratio)}x (target >= 0.5x)${ratio < 0.5 ? "  TARGET MISSED" : ""}`);
} finally {
  runCleanups();
}
