// Restart time and snapshot stall: kv against Debian's redis-server (issue 3, item 6 b and c).
//
//   bun scripts/bench-durable.ts [--keys 1000000] [--rounds 3] [--kv-bin ./kv] [--only b|c]
//                                [--write-rate 20000] [--no-redis-stall]
//
// (b) Restart time. N keys `key:%012d` (16 bytes) with 100-byte values are loaded into
//     `kv serve` (default flags: --fsync always) and into
//     `redis-server --appendonly yes --appendfsync always --save ''` (auto AOF rewrite off, so
//     its AOF is a plain log of SETs). Both are stopped with SIGTERM and restarted on their data,
//     --rounds times each, interleaved. The restart time runs from spawn until a GET of the last
//     key loaded returns the right value (kv opens its port once loaded; redis answers -LOADING
//     until then; both are retried every 5 ms on a fresh connection). Four data states:
//       kv after SAVE         the snapshot covers every key, the log tail is empty
//       kv as left by load    automatic snapshots (every 64 MB of log) + the log after the last one
//       redis AOF             a base file plus the incr AOF holding every SET
//       redis after BGREWRITEAOF  RDB-preamble base, empty incr file (redis's analogue of SAVE)
//     Also reported: kv's own "loaded ... in T ms" and redis's "DB loaded from append only file".
// (c) Snapshot stall. With N keys loaded, a child process runs 20 clients doing pipelined SETs of
//     random existing keys at a bounded rate, and this process runs a probe: GET of a random key,
//     one at a time, back to back, recording every round trip. BGSAVE is issued, INFO persistence
//     is polled until rdb_bgsave_in_progress:0, then an equal window without a snapshot follows.
//     Max and p99.9 of the probe in both windows; kv_last_snapshot_ms and
//     kv_last_snapshot_longest_slice_ms. Same for redis-server (fork) unless --no-redis-stall.
//     kv runs here with --snapshot-log-bytes 100gb so no automatic snapshot lands in a baseline.
//
// Everything runs on free 127.0.0.1 ports with temp data dirs under $TMPDIR/kv-bench-durable-*,
// removed on exit; servers and the writer child are killed on exit and on Ctrl-C. The kv binary
// is copied into the temp dir first. Both servers read their files from the page cache (the data
// was just written or copied): these are warm restarts.
import { copyFileSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import {
  bulkLoad,
  fmtNum,
  freePort,
  installCleanupHandlers,
  machineDescription,
  makeTempDir,
  median,
  minMax,
  onCleanup,
  printTable,
  respCommand,
  sleep,
  waitForIdle,
} from "./bench-lib.ts";

const VALUE_BYTES = 100;
const keyName = (k: number) => `key:${String(k).padStart(12, "0")}`;
/** The value bulkLoad writes for key k: the 12-digit number, then 'v' up to VALUE_BYTES. */
const valueOf = (k: number) => String(k).padStart(12, "0") + "v".repeat(VALUE_BYTES - 12);

// ---------------------------------------------------------------- writer child
// `bun bench-durable.ts --writer PORT KEYS RATE SECONDS`: 20 connections, each sending a batch of
// SETs every 10 ms (only when the previous batch is answered), for SECONDS. Prints JSON stats.
if (process.argv[2] === "--writer") {
  await runWriter(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6]));
  process.exit(0);
}

async function runWriter(port: number, keys: number, rate: number, seconds: number): Promise<void> {
  const CLIENTS = 20;
  const TICK_MS = 10;
  const batch = Math.max(1, Math.round(rate / CLIENTS / (1000 / TICK_MS)));
  const value = "w".repeat(VALUE_BYTES);
  let sent = 0;
  let replies = 0;
  let errors = 0;
  let skipped = 0;
  const socks: Array<{ s: Awaited<ReturnType<typeof Bun.connect>>; outstanding: number }> = [];
  for (let c = 0; c < CLIENTS; c++) {
    const st = { s: null as unknown as Awaited<ReturnType<typeof Bun.connect>>, outstanding: 0 };
    st.s = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data(_s, d) {
          for (let i = 0; i < d.length; i++) {
            if (d[i] === 10) {
              replies++;
              st.outstanding--;
            } else if (d[i] === 45 /* - */ && (i === 0 || d[i - 1] === 10)) errors++;
          }
        },
        close() {},
        error() {},
      },
    });
    socks.push(st);
  }
  const started = performance.now();
  const report = () => {
    const secs = (performance.now() - started) / 1000;
    console.log(JSON.stringify({ sent, replies, errors, skipped, perSec: Math.round(replies / secs) }));
  };
  process.on("SIGTERM", () => {
    report();
    process.exit(0);
  });
  const timer = setInterval(() => {
    for (const st of socks) {
      if (st.outstanding > 0) {
        skipped++;
        continue;
      }
      let out = "";
      for (let i = 0; i < batch; i++) {
        out += `*3\r\n$3\r\nSET\r\n$16\r\n${keyName(Math.floor(Math.random() * keys))}\r\n$${VALUE_BYTES}\r\n${value}\r\n`;
      }
      st.outstanding += batch;
      sent += batch;
      st.s.write(out);
    }
  }, TICK_MS);
  await sleep(seconds * 1000);
  clearInterval(timer);
  await sleep(200);
  for (const st of socks) st.s.end();
  report();
}

// ---------------------------------------------------------------- options

const { values: opt } = parseArgs({
  args: process.argv.slice(2),
  options: {
    keys: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "3" },
    "kv-bin": { type: "string", default: "./kv" },
    "kv-commit": { type: "string", default: "" },
    only: { type: "string", default: "" },
    "write-rate": { type: "string", default: "20000" },
    "no-redis-stall": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (opt.help) {
  console.log(`usage: bun scripts/bench-durable.ts [--keys 1000000] [--rounds 3] [--kv-bin ./kv] [--only b|c]
                                    [--write-rate 20000] [--no-redis-stall]
  (b) restart time of kv (after SAVE, and snapshot + log tail) and redis-server (AOF, and after BGREWRITEAOF)
  (c) longest probe stall while BGSAVE writes a snapshot, against an equal window without one`);
  process.exit(0);
}
const KEYS = Number(opt.keys);
const ROUNDS = Math.max(1, Number(opt.rounds));
const WRITE_RATE = Number(opt["write-rate"]);
if (!(KEYS >= 1000) || !(WRITE_RATE > 0)) throw new Error("--keys must be >= 1000 and --write-rate > 0");
const doB = opt.only === "" || opt.only === "b";
const doC = opt.only === "" || opt.only === "c";
const LAST = KEYS - 1;

installCleanupHandlers();
const base = makeTempDir("kv-bench-durable-");
const kvSrc = resolve(opt["kv-bin"]!);
if (!existsSync(kvSrc)) throw new Error(`${kvSrc} not found: run \`bun run build\` or pass --kv-bin`);
const KV = join(base, "kv");
copyFileSync(kvSrc, KV);
Bun.spawnSync(["chmod", "+x", KV]);
const redisVersion = Bun.spawnSync(["redis-server", "--version"]).stdout.toString().trim();
if (!redisVersion) throw new Error("redis-server not found (apt-get install redis-server)");

function loadavg(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}
function commit(): string {
  const r = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: import.meta.dir });
  return r.stdout.toString().trim() || "?";
}
/** Apparent size of the files under dir, and a short listing ("wal/x 12.3 MiB, ..."). */
function dirBytes(dir: string, prefix = ""): number {
  return dirFiles(dir, prefix).reduce((a, f) => a + f.size, 0);
}
function dirFiles(dir: string, prefix = ""): Array<{ name: string; size: number }> {
  const out: Array<{ name: string; size: number }> = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...dirFiles(p, `${prefix}${e.name}/`));
    else if (e.isFile()) out.push({ name: prefix + e.name, size: statSync(p).size });
  }
  return out;
}
const listing = (dir: string) => dirFiles(dir).map((f) => `${f.name} ${(f.size / 1048576).toFixed(1)}M`).join(", ");
function copyDir(from: string, to: string): void {
  const r = Bun.spawnSync(["cp", "-a", from, to]);
  if (r.exitCode !== 0) throw new Error(`cp -a ${from} ${to}: ${r.stderr.toString()}`);
}
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");

const kvLabel = opt["kv-commit"] ? `kv ${opt["kv-commit"]}` : `kv binary ${kvSrc} built ${statSync(kvSrc).mtime.toISOString()}, repo HEAD ${commit()}`;
let thp = "?";
try {
  thp = /\[(\w+)\]/.exec(readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8"))?.[1] ?? "?";
} catch {
  // not Linux or no THP
}
console.log(`bench-durable: ${new Date().toISOString()}, ${kvLabel}, ${redisVersion.split(" ").slice(0, 3).join(" ")}`);
console.log(`machine: ${machineDescription()}; transparent hugepages ${thp}; load average ${loadavg()}`);
console.log(`keys: ${KEYS} (16-byte keys, ${VALUE_BYTES}-byte values), rounds: ${ROUNDS}\n`);

// ---------------------------------------------------------------- processes

interface Proc {
  name: string;
  port: number;
  proc: Subprocess;
  logPath: string;
  logStart: number;
  exited: boolean;
  stop(): Promise<number>; // ms to exit after SIGTERM
  newLog(): string;
}

function spawnProc(name: string, argv: string[], port: number, logPath: string): Proc {
  const logStart = existsSync(logPath) ? statSync(logPath).size : 0;
  const fd = openSync(logPath, "a");
  let proc: Subprocess;
  try {
    proc = Bun.spawn(argv, { stdin: "ignore", stdout: fd, stderr: fd });
  } finally {
    closeSync(fd);
  }
  const p: Proc = {
    name,
    port,
    proc,
    logPath,
    logStart,
    exited: false,
    async stop() {
      if (p.exited) return 0;
      const t0 = performance.now();
      proc.kill("SIGTERM");
      const r = await Promise.race([proc.exited.then(() => "ok"), sleep(30_000).then(() => "timeout")]);
      if (r === "timeout") {
        console.log(`WARNING: ${name} did not exit within 30 s of SIGTERM; killed`);
        proc.kill("SIGKILL");
        await Promise.race([proc.exited, sleep(2000)]);
      }
      return performance.now() - t0;
    },
    newLog() {
      try {
        return stripAnsi(readFileSync(logPath).subarray(logStart).toString("utf8"));
      } catch {
        return "";
      }
    },
  };
  void proc.exited.then(() => {
    p.exited = true;
  });
  onCleanup(() => {
    if (!p.exited) proc.kill("SIGKILL");
  });
  return p;
}

const kvArgv = (port: number, dir: string, extra: string[] = []) => [KV, "serve", "--port", String(port), "--data-dir", dir, ...extra];
const redisArgv = (port: number, dir: string) => [
  "redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
  "--appendfsync", "always", "--auto-aof-rewrite-percentage", "0", "--dir", dir,
];

/** Spawns and waits until GET of `key` returns `want`: retries every 5 ms on refused connections and -LOADING. */
async function startAndWait(name: string, argv: string[], port: number, logPath: string, key: string, want: string, timeoutMs = 120_000) {
  const dirArg = argv.indexOf(name === "redis" ? "--dir" : "--data-dir");
  if (dirArg > 0) mkdirSync(argv[dirArg + 1]!, { recursive: true }); // redis needs its --dir to exist
  const t0 = performance.now();
  const p = spawnProc(name, argv, port, logPath);
  let loadingReplies = 0;
  for (;;) {
    if (p.exited) throw new Error(`${name} exited (code ${p.proc.exitCode}) while starting:\n${p.newLog().slice(-2000)}`);
    if (performance.now() - t0 > timeoutMs) {
      await p.stop();
      throw new Error(`${name} not ready within ${timeoutMs} ms:\n${p.newLog().slice(-2000)}`);
    }
    let r: string | null = null;
    try {
      r = await respCommand(port, ["GET", key], 5000);
    } catch {
      // not listening yet
    }
    if (r !== null) {
      if (r === want) break;
      if (r.startsWith("-LOADING")) loadingReplies++;
      else {
        await p.stop();
        throw new Error(`${name}: GET ${key} returned ${JSON.stringify(r.slice(0, 200))}, expected ${JSON.stringify(want)}`);
      }
    }
    await sleep(5);
  }
  return { p, readyMs: performance.now() - t0, loadingReplies };
}

async function info(port: number, section: string): Promise<Record<string, string>> {
  // respCommand returns a bulk string whole.
  const s = await respCommand(port, ["INFO", section], 10_000);
  const out: Record<string, string> = {};
  for (const line of s.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

async function waitInfo(port: number, pred: (i: Record<string, string>) => boolean, timeoutMs: number, what: string, pollMs = 50) {
  const t0 = performance.now();
  for (;;) {
    const i = await info(port, "persistence");
    if (pred(i)) return i;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

async function checkData(name: string, port: number): Promise<void> {
  const n = await respCommand(port, ["DBSIZE"], 10_000);
  if (n !== `:${KEYS}`) throw new Error(`${name}: DBSIZE ${n}, expected :${KEYS}`);
  for (const k of [0, Math.floor(KEYS / 2), Math.floor(Math.random() * KEYS), LAST]) {
    const v = await respCommand(port, ["GET", keyName(k)], 10_000);
    if (v !== valueOf(k)) throw new Error(`${name}: GET ${keyName(k)} returned ${JSON.stringify(v.slice(0, 120))}`);
  }
}

// ---------------------------------------------------------------- (b) restart time

interface RestartSample {
  readyMs: number;
  ownMs: number; // the server's own load time from its log
  detail: string;
}

function parseKvLoaded(log: string): { ms: number; detail: string } {
  const m = /loaded .*?: snapshot at index (\d+) \((\d+) keys\) \+ (\d+) log records, last index (\d+), (\d+) keys in (\d+) ms/.exec(log);
  if (!m) return { ms: NaN, detail: "no 'loaded' line" };
  return { ms: Number(m[6]), detail: `snapshot@${m[1]} (${m[2]} keys) + ${m[3]} records` };
}
function parseRedisLoaded(log: string): { ms: number; detail: string } {
  const total = /DB loaded from append only file: ([\d.]+) seconds/.exec(log);
  const parts = [...log.matchAll(/DB loaded from (base|incr) file (\S+): ([\d.]+) seconds/g)].map((m) => `${m[1]} ${m[3]} s`);
  return { ms: total ? Number(total[1]) * 1000 : NaN, detail: parts.join(", ") };
}

async function partB(): Promise<void> {
  console.log("== (b) restart time ==");
  const kvTail = join(base, "kv-tail");
  const kvSaved = join(base, "kv-saved");
  const rAof = join(base, "redis-aof");
  const rRew = join(base, "redis-rewritten");
  const want = valueOf(LAST);

  // kv: load, wait for any automatic snapshot, stop.
  {
    const port = freePort();
    const { p } = await startAndWait("kv", kvArgv(port, kvTail), port, join(base, "kv-load.log"), "nokey", "$-1", 30_000);
    const { ms } = await bulkLoad(port, KEYS, VALUE_BYTES, { timeoutMs: 600_000 });
    await waitInfo(port, (i) => i.rdb_bgsave_in_progress === "0", 120_000, "kv automatic snapshot to finish");
    await checkData("kv", port);
    const i = await info(port, "persistence");
    const stopMs = await p.stop();
    console.log(
      `kv: loaded ${KEYS} keys in ${(ms / 1000).toFixed(1)} s (${Math.round(KEYS / (ms / 1000))} SET/s, --fsync always, one pipelined connection); ` +
        `last snapshot at index ${i.kv_last_snapshot_index}; stopped in ${Math.round(stopMs)} ms`,
    );
  }
  copyDir(kvTail, kvSaved);
  {
    const port = freePort();
    const { p } = await startAndWait("kv", kvArgv(port, kvSaved), port, join(base, "kv-save.log"), keyName(LAST), want);
    const t0 = performance.now();
    const r = await respCommand(port, ["SAVE"], 120_000);
    if (r !== "+OK") throw new Error(`kv SAVE replied ${r}`);
    const i = await info(port, "persistence");
    await p.stop();
    console.log(`kv: SAVE took ${Math.round(performance.now() - t0)} ms (kv_last_snapshot_ms ${i.kv_last_snapshot_ms}, longest slice ${i.kv_last_snapshot_longest_slice_ms} ms)`);
  }
  // redis: load into a fresh AOF, stop; a copy gets BGREWRITEAOF.
  {
    const port = freePort();
    const { p } = await startAndWait("redis", redisArgv(port, rAof), port, join(base, "redis-load.log"), "nokey", "$-1", 30_000);
    const { ms } = await bulkLoad(port, KEYS, VALUE_BYTES, { timeoutMs: 600_000 });
    await checkData("redis", port);
    const stopMs = await p.stop();
    console.log(
      `redis: loaded ${KEYS} keys in ${(ms / 1000).toFixed(1)} s (${Math.round(KEYS / (ms / 1000))} SET/s, appendfsync always); stopped in ${Math.round(stopMs)} ms`,
    );
  }
  copyDir(rAof, rRew);
  {
    const port = freePort();
    const { p } = await startAndWait("redis", redisArgv(port, rRew), port, join(base, "redis-rewrite.log"), keyName(LAST), want);
    const t0 = performance.now();
    await respCommand(port, ["BGREWRITEAOF"], 10_000);
    await sleep(100);
    await waitInfo(port, (i) => i.aof_rewrite_in_progress === "0" && i.aof_rewrite_scheduled === "0", 120_000, "redis BGREWRITEAOF");
    await p.stop();
    console.log(`redis: BGREWRITEAOF took ${Math.round(performance.now() - t0)} ms`);
  }
  const variants = [
    { label: "kv after SAVE", server: "kv", dir: kvSaved, argv: kvArgv, parse: parseKvLoaded },
    { label: "kv as left by the load", server: "kv", dir: kvTail, argv: kvArgv, parse: parseKvLoaded },
    { label: "redis AOF", server: "redis", dir: rAof, argv: redisArgv, parse: parseRedisLoaded },
    { label: "redis after BGREWRITEAOF", server: "redis", dir: rRew, argv: redisArgv, parse: parseRedisLoaded },
  ];
  const samples = new Map<string, RestartSample[]>(variants.map((v) => [v.label, []]));
  for (const v of variants) console.log(`  ${v.label}: ${(dirBytes(v.dir) / 1048576).toFixed(1)} MiB: ${listing(v.dir)}`);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const v of variants) {
      const idle = await waitForIdle(0.1, 5000);
      const port = freePort();
      const { p, readyMs, loadingReplies } = await startAndWait(v.server, v.argv(port, v.dir), port, join(base, `restart-${v.server}.log`), keyName(LAST), want);
      await checkData(v.label, port);
      await p.stop();
      const own = v.parse(p.newLog());
      samples.get(v.label)!.push({ readyMs, ownMs: own.ms, detail: own.detail });
      console.log(
        `  round ${round} ${v.label}: ready in ${Math.round(readyMs)} ms, own load ${fmtNum(own.ms, 0)} ms (${own.detail}` +
          `${loadingReplies ? `; ${loadingReplies} -LOADING replies` : ""}; machine ${Math.round(idle.busy * 100)}% busy before)`,
      );
    }
  }
  console.log("");
  const rows: string[][] = [];
  const med = new Map<string, { ready: number; own: number }>();
  for (const v of variants) {
    const s = samples.get(v.label)!;
    const ready = median(s.map((x) => x.readyMs));
    const own = median(s.map((x) => x.ownMs));
    const [lo, hi] = minMax(s.map((x) => x.readyMs));
    med.set(v.label, { ready, own });
    rows.push([v.label, `${Math.round(ready)} (${Math.round(lo)}-${Math.round(hi)})`, fmtNum(own, 0), s[0]!.detail, `${(dirBytes(v.dir) / 1048576).toFixed(0)} MiB`]);
  }
  printTable(["data state", "spawn to correct GET, ms (range)", "own load ms", "what was loaded", "on disk"], rows);
  console.log("");
  const redisAof = med.get("redis AOF")!;
  const redisRew = med.get("redis after BGREWRITEAOF")!;
  const ratioRows: string[][] = [];
  for (const label of ["kv after SAVE", "kv as left by the load"]) {
    const k = med.get(label)!;
    const met = k.ready <= 2000 && k.ready < redisAof.ready;
    ratioRows.push([
      label,
      `${fmtNum(k.ready / redisAof.ready)}x`,
      `${fmtNum(k.own / redisAof.own)}x`,
      `${fmtNum(k.ready / redisRew.ready)}x`,
      `${met ? "met" : "MISSED"} (${Math.round(k.ready)} ms; redis AOF ${Math.round(redisAof.ready)} ms)`,
    ]);
  }
  printTable(["kv state", "restart kv/redis AOF", "own load kv/redis AOF", "restart kv/redis rewritten", "target <= 2 s and < redis AOF"], ratioRows);
  for (const r of ratioRows) console.log(`${r[4]!.startsWith("met") ? "target met" : "TARGET MISSED"}: restart, ${r[0]}: ${r[4]}`);
  console.log("");
}

// ---------------------------------------------------------------- (c) snapshot stall

/** One connection, GET of a random key, one at a time. Records send time and round trip (ms). */
class Probe {
  starts = new Float64Array(4_000_000);
  rtts = new Float64Array(4_000_000);
  n = 0;
  private sock!: Awaited<ReturnType<typeof Bun.connect>>;
  private got = 0;
  private t = 0;
  private stopped = false;
  private readonly want = 6 + VALUE_BYTES + 2; // "$100\r\n" + value + "\r\n"
  bad = 0;

  async start(port: number): Promise<void> {
    this.sock = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, d) => {
          if (this.got === 0 && d[0] !== 36 /* $ */) this.bad++;
          this.got += d.length;
          if (this.got >= this.want) {
            const now = performance.now();
            if (this.n < this.rtts.length) {
              this.starts[this.n] = this.t;
              this.rtts[this.n] = now - this.t;
              this.n++;
            }
            this.got = 0;
            this.send();
          }
        },
        close: () => {
          if (!this.stopped) console.log("WARNING: probe connection closed");
        },
        error() {},
      },
    });
    this.send();
  }
  private send(): void {
    if (this.stopped) return;
    const key = keyName(Math.floor(Math.random() * KEYS));
    this.t = performance.now();
    this.sock.write(`*2\r\n$3\r\nGET\r\n$16\r\n${key}\r\n`);
  }
  stop(): void {
    this.stopped = true;
    this.sock.end();
  }
  /** Round trips that overlap [from, to). */
  window(from: number, to: number): { count: number; max: number; p999: number; p50: number; perSec: number } {
    const v: number[] = [];
    for (let i = 0; i < this.n; i++) {
      const s = this.starts[i]!;
      if (s < to && s + this.rtts[i]! >= from) v.push(this.rtts[i]!);
    }
    v.sort((a, b) => a - b);
    const q = (p: number) => (v.length ? v[Math.min(v.length - 1, Math.floor(p * v.length))]! : NaN);
    return { count: v.length, max: v.length ? v[v.length - 1]! : NaN, p999: q(0.999), p50: q(0.5), perSec: v.length / ((to - from) / 1000) };
  }
}

interface StallRound {
  snapMs: number; // BGSAVE sent until INFO shows rdb_bgsave_in_progress:0
  during: ReturnType<Probe["window"]>;
  without: ReturnType<Probe["window"]>;
  kvSnapMs: number;
  kvSliceMs: number;
  forkMs: number; // redis: latest_fork_usec / 1000
}

async function stallFor(server: "kv" | "redis", dir: string): Promise<StallRound[]> {
  const port = freePort();
  const argv = server === "kv" ? kvArgv(port, dir, ["--snapshot-log-bytes", "100gb"]) : redisArgv(port, dir);
  const { p } = await startAndWait(server, argv, port, join(base, `stall-${server}.log`), keyName(LAST), valueOf(LAST));
  await checkData(server, port);
  // Each round: snapshot window (up to 60 s) + equal window + gaps; the writer runs for all of them.
  const writerSeconds = ROUNDS * 130 + 10;
  const writer = Bun.spawn([process.execPath, import.meta.path, "--writer", String(port), String(KEYS), String(WRITE_RATE), String(writerSeconds)], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  let writerDone = false;
  void writer.exited.then(() => (writerDone = true));
  onCleanup(() => {
    if (!writerDone) writer.kill("SIGKILL");
  });
  const probe = new Probe();
  await probe.start(port);
  await sleep(2000); // warm-up with the writers running
  const out: StallRound[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      await waitForIdle(0.9, 3000); // the writers keep it busy; only skip the worst spikes
      const before = await info(port, "persistence");
      const t0 = performance.now();
      const r = await respCommand(port, ["BGSAVE"], 10_000);
      if (!r.startsWith("+")) throw new Error(`${server} BGSAVE replied ${r}`);
      await sleep(5);
      const after = await waitInfo(port, (i) => i.rdb_bgsave_in_progress === "0", 120_000, `${server} BGSAVE`, 10);
      const t1 = performance.now();
      const snapMs = t1 - t0;
      if (server === "kv" && after.kv_last_snapshot_index === before.kv_last_snapshot_index && before.kv_last_snapshot_index !== "0") {
        console.log(`WARNING: kv_last_snapshot_index did not change (${before.kv_last_snapshot_index})`);
      }
      // An equal window without a snapshot, after a 1 s gap.
      await sleep(1000);
      const w0 = performance.now();
      await sleep(snapMs);
      const w1 = performance.now();
      const check = await info(port, "persistence");
      if (check.rdb_bgsave_in_progress !== "0" || (server === "kv" && check.kv_last_snapshot_index !== after.kv_last_snapshot_index)) {
        console.log("WARNING: a snapshot ran during the window without one");
      }
      if (probe.bad > 0) throw new Error(`probe got ${probe.bad} replies that were not bulk strings`);
      const rr: StallRound = {
        snapMs,
        during: probe.window(t0, t1),
        without: probe.window(w0, w1),
        kvSnapMs: Number(after.kv_last_snapshot_ms ?? NaN),
        kvSliceMs: Number(after.kv_last_snapshot_longest_slice_ms ?? NaN),
        forkMs: server === "redis" ? Number((await info(port, "stats")).latest_fork_usec ?? NaN) / 1000 : NaN,
      };
      out.push(rr);
      console.log(
        `  ${server} round ${round}: snapshot ${Math.round(snapMs)} ms` +
          (server === "kv"
            ? ` (kv_last_snapshot_ms ${after.kv_last_snapshot_ms}, longest slice ${after.kv_last_snapshot_longest_slice_ms} ms)`
            : ` (fork ${fmtNum(rr.forkMs)} ms)`) +
          `; probe during: ${rr.during.count} GETs, p50 ${fmtNum(rr.during.p50, 3)}, p99.9 ${fmtNum(rr.during.p999)}, max ${fmtNum(rr.during.max)} ms` +
          `; without: ${rr.without.count} GETs, p50 ${fmtNum(rr.without.p50, 3)}, p99.9 ${fmtNum(rr.without.p999)}, max ${fmtNum(rr.without.max)} ms; load ${loadavg()}`,
      );
      await sleep(500);
    }
  } finally {
    probe.stop();
    writer.kill("SIGTERM");
  }
  await Promise.race([writer.exited, sleep(3000)]);
  if (!writerDone) writer.kill("SIGKILL");
  const ws = await new Response(writer.stdout).text().catch(() => "");
  if (ws.trim()) console.log(`  ${server} writers: ${ws.trim()}`);
  await p.stop();
  return out;
}

async function partC(kvDir: string | null, redisDir: string | null): Promise<void> {
  console.log(`== (c) stall while a snapshot is written (probe: GET one at a time; 20 writer clients, ${WRITE_RATE} SET/s target) ==`);
  // Without (b), make the data here.
  if (!kvDir) {
    kvDir = join(base, "kv-c");
    const port = freePort();
    const { p } = await startAndWait("kv", kvArgv(port, kvDir), port, join(base, "kv-load.log"), "nokey", "$-1", 30_000);
    await bulkLoad(port, KEYS, VALUE_BYTES, { timeoutMs: 600_000 });
    if ((await respCommand(port, ["SAVE"], 120_000)) !== "+OK") throw new Error("kv SAVE failed");
    await p.stop();
  }
  if (!redisDir && !opt["no-redis-stall"]) {
    redisDir = join(base, "redis-c");
    const port = freePort();
    const { p } = await startAndWait("redis", redisArgv(port, redisDir), port, join(base, "redis-load.log"), "nokey", "$-1", 30_000);
    await bulkLoad(port, KEYS, VALUE_BYTES, { timeoutMs: 600_000 });
    await respCommand(port, ["BGREWRITEAOF"], 10_000);
    await sleep(100);
    await waitInfo(port, (i) => i.aof_rewrite_in_progress === "0" && i.aof_rewrite_scheduled === "0", 120_000, "redis BGREWRITEAOF");
    await p.stop();
  }
  const results: Array<[string, StallRound[]]> = [["kv", await stallFor("kv", kvDir)]];
  if (redisDir && !opt["no-redis-stall"]) results.push(["redis (fork)", await stallFor("redis", redisDir)]);
  console.log("");
  const rows = results.map(([name, rs]) => [
    name,
    fmtNum(median(rs.map((r) => r.snapMs)), 0),
    `${fmtNum(median(rs.map((r) => r.during.max)))} / ${fmtNum(median(rs.map((r) => r.without.max)))}`,
    `${fmtNum(median(rs.map((r) => r.during.p999)))} / ${fmtNum(median(rs.map((r) => r.without.p999)))}`,
    `${fmtNum(median(rs.map((r) => r.during.p50)), 3)} / ${fmtNum(median(rs.map((r) => r.without.p50)), 3)}`,
    `${Math.round(median(rs.map((r) => r.during.perSec)))} / ${Math.round(median(rs.map((r) => r.without.perSec)))}`,
    `${fmtNum(Math.max(...rs.map((r) => r.during.max)))} / ${fmtNum(Math.max(...rs.map((r) => r.without.max)))}`,
    name === "kv"
      ? `kv_last_snapshot_ms ${fmtNum(median(rs.map((r) => r.kvSnapMs)), 0)}, longest slice ${fmtNum(median(rs.map((r) => r.kvSliceMs)))} ms`
      : `fork ${fmtNum(median(rs.map((r) => r.forkMs)))} ms`,
  ]);
  printTable(
    [
      "server",
      "snapshot ms",
      "probe max ms: during / without",
      "p99.9 ms: during / without",
      "p50 ms: during / without",
      "probe GETs/s: during / without",
      "worst max over rounds",
      "server's own figures",
    ],
    rows,
  );
  console.log(`(medians over ${ROUNDS} rounds; "without" is an equal window 1 s after the snapshot ended)\n`);
}

// ---------------------------------------------------------------- main

const started = performance.now();
if (doB) await partB();
if (doC) await partC(doB ? join(base, "kv-saved") : null, doB ? join(base, "redis-rewritten") : null);
console.log(`done in ${Math.round((performance.now() - started) / 1000)} s; load average ${loadavg()}`);
process.exit(0);
