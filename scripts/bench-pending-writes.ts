// Peak memory of ./kv serve behind a slow disk: many clients pipeline 1 KiB SETs (over a few keys
// each) without waiting for replies while every log fdatasync is delayed (KV_TEST_FSYNC_DELAY_MS). Prints the server's
// peak RSS (VmHWM), the most bytes INFO showed pending, and the time until every write was acked.
//
//   KV_TEST_FSYNC_DELAY_MS=2000 bun scripts/bench-pending-writes.ts [--kv ./kv] [--limit 256mb] [--conns 50] [--writes 10000]
//
// --kv may name another build (say, one without --pending-writes-limit: pass --limit none).
// Bounded: every client stops after --writes SETs, the whole run after --timeout-s seconds.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { encodeCommand } from "../src/resp/request-parser.ts";
import { fmtMB, freePort, installCleanupHandlers, makeTempDir, respCommand, startServer } from "./bench-lib.ts";

const { values: args } = parseArgs({
  options: {
    kv: { type: "string", default: "./kv" },
    limit: { type: "string", default: "256mb" },
    conns: { type: "string", default: "50" },
    writes: { type: "string", default: "10000" },
    "value-bytes": { type: "string", default: "1024" },
    "keys-per-conn": { type: "string", default: "100" },
    "timeout-s": { type: "string", default: "180" },
  },
});
const conns = Number(args.conns);
const writes = Number(args.writes);
const valueBytes = Number(args["value-bytes"]);
// Each client overwrites a few keys, so the keyspace stays small (50 x 100 x 1 KiB = 5 MiB) and
// the peak RSS shows what is held in flight, not the data set.
const keysPerConn = Number(args["keys-per-conn"]);
const deadline = Date.now() + Number(args["timeout-s"]) * 1000;

function statusKb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

installCleanupHandlers();
// The server inherits the environment this script started with (Bun.spawn does not see later changes).
const delayMs = process.env.KV_TEST_FSYNC_DELAY_MS;
if (delayMs === undefined) {
  console.error("set KV_TEST_FSYNC_DELAY_MS (the delay of every log fdatasync, in ms) for the server to inherit");
  process.exit(2);
}
const dir = makeTempDir("kv-bench-pending-");
const port = freePort();
const flags = ["serve", "--port", String(port), "--data-dir", `${dir}/data`, "--log-level", "warn", "--snapshot-log-bytes", "8gb"];
if (args.limit !== "none") flags.push("--pending-writes-limit", args.limit);
const server = await startServer("kv", [args.kv!, ...flags], port, dir);

const value = "v".repeat(valueBytes);
let acked = 0;
let errors = 0;
const t0 = performance.now();

/** One client: writes its SETs as fast as the socket takes them, counts the replies. */
async function client(c: number): Promise<void> {
  let next = 0;
  let replies = 0;
  let pendingChunk: Buffer | null = null;
  const chunk = (): Buffer | null => {
    if (next >= writes) return null;
    const parts: Buffer[] = [];
    for (let i = 0; i < 64 && next < writes; i++, next++) parts.push(encodeCommand(["SET", `k:${c}:${next % keysPerConn}`, value]));
    return Buffer.concat(parts);
  };
  const pump = (s: { write(b: Buffer): number }) => {
    for (;;) {
      const b = pendingChunk ?? chunk();
      if (b === null) return;
      const n = s.write(b);
      if (n < b.length) {
        pendingChunk = b.subarray(Math.max(n, 0));
        return;
      }
      pendingChunk = null;
    }
  };
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, d) {
        for (const byte of d) if (byte === 0x0a) replies++;
        if (d.includes(0x2d)) errors++;
        if (replies >= writes) done();
      },
      drain: (s) => pump(s),
      close: () => done(),
    },
  });
  pump(socket);
  await Promise.race([finished, Bun.sleep(Math.max(0, deadline - Date.now()))]);
  acked += replies;
  socket.end();
}

let peakPending = 0;
let peakRss = 0;
let sampling = true;
const sampler = (async () => {
  while (sampling && Date.now() < deadline) {
    peakRss = Math.max(peakRss, statusKb(server.pid, "VmRSS"));
    try {
      const info = await respCommand(port, ["INFO", "persistence"], 2000);
      const m = /kv_pending_writes_bytes:(\d+)/.exec(info);
      if (m) peakPending = Math.max(peakPending, Number(m[1]));
    } catch {}
    await Bun.sleep(100);
  }
})();

await Promise.all(Array.from({ length: conns }, (_, c) => client(c)));
const seconds = (performance.now() - t0) / 1000;
sampling = false;
await sampler;
const hwm = statusKb(server.pid, "VmHWM");
await server.stop();
console.log(
  `kv=${args.kv} limit=${args.limit} fsync-delay=${delayMs}ms conns=${conns} writes/conn=${writes} value=${valueBytes}B: ` +
    `acked ${acked}/${conns * writes} (error replies: ${errors}) in ${seconds.toFixed(1)} s; ` +
    `peak RSS (VmHWM) ${fmtMB(hwm)}, most pending in INFO ${args.limit === "none" ? "n/a" : fmtMB(peakPending)}`,
);
