// Shared helpers for the benchmark scripts (scripts/bench-*.ts).
// Linux only: CPU time and RSS come from /proc. Everything here is bounded by time.
import { mkdtempSync, readFileSync, rmSync, openSync, closeSync, existsSync } from "node:fs";
import { tmpdir, cpus, totalmem } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

// ---------------------------------------------------------------- cleanup

const cleanups: Array<() => void> = [];
let cleaned = false;

/** Registers a synchronous cleanup step (kill a process, remove a dir). Run on exit and on SIGINT/SIGTERM. */
export function onCleanup(fn: () => void): void {
  cleanups.push(fn);
}

/** Runs every registered cleanup step once, last registered first. Safe to call more than once. */
export function runCleanups(): void {
  if (cleaned) return;
  cleaned = true;
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    try {
      fn();
    } catch {
      // best effort: keep cleaning up the rest
    }
  }
}

let handlersInstalled = false;
/** Installs exit/SIGINT/SIGTERM/SIGHUP handlers that run the cleanups (idempotent). */
export function installCleanupHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on("exit", runCleanups);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      console.error(`\n${sig}: stopping servers and removing temp dirs`);
      runCleanups();
      process.exit(130);
    });
  }
}

/** Creates a temp dir that is removed on exit. */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---------------------------------------------------------------- small utils

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

export function minMax(xs: number[]): [number, number] {
  const v = xs.filter((x) => Number.isFinite(x));
  if (v.length === 0) return [NaN, NaN];
  return [Math.min(...v), Math.max(...v)];
}

/** 1234567 -> "1235k"; 950 -> "950". */
export function fmtOps(x: number): string {
  if (!Number.isFinite(x)) return "-";
  if (x >= 10_000) return `${Math.round(x / 1000)}k`;
  return `${Math.round(x)}`;
}

export function fmtNum(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : "-";
}

export function fmtMB(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 1048576).toFixed(1)} MiB` : "-";
}

/** Prints a Markdown table (pipe-separated; readable in a terminal and pasteable into docs). */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const r of rows) console.log(line(r));
}

// ---------------------------------------------------------------- /proc

let clkTck = 0;
/** Clock ticks per second for /proc/PID/stat (getconf CLK_TCK; 100 on Linux in practice). */
export function clockTicks(): number {
  if (clkTck) return clkTck;
  try {
    const r = Bun.spawnSync(["getconf", "CLK_TCK"]);
    const n = Number(r.stdout.toString().trim());
    clkTck = Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    clkTck = 100;
  }
  return clkTck;
}

/** utime+stime of a process (all its threads) in seconds, from /proc/PID/stat. NaN if gone. */
export function procCpuSeconds(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm (field 2) may contain spaces and parentheses: split after the last ')'.
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    // rest[0] is field 3 (state), so field N is rest[N - 3]: utime=14, stime=15.
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return (utime + stime) / clockTicks();
  } catch {
    return NaN;
  }
}

/** VmRSS of a process in bytes, from /proc/PID/status. NaN if gone. */
export function procRssBytes(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(s);
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

function readCpuTotals(): { busy: number; total: number; procBusy: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice; guest is already in user.
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  // procBusy leaves out irq/softirq: loopback packet processing of the benchmark itself lands there
  // and is not charged to any process, so it must not count as "other load".
  const procBusy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[7] ?? 0);
  return { busy: total - idle, total, procBusy };
}

/** CPU time spent in processes (user+nice+system+steal, all cores) so far, in seconds, from /proc/stat. */
export function machineProcessSeconds(): number {
  return readCpuTotals().procBusy / clockTicks();
}

/** Share of the whole machine (0..1) that was busy over `ms`. */
export async function machineBusy(ms = 500): Promise<number> {
  const a = readCpuTotals();
  await sleep(ms);
  const b = readCpuTotals();
  const dt = b.total - a.total;
  return dt > 0 ? (b.busy - a.busy) / dt : 0;
}

/**
 * Waits until the machine is idle: less than `threshold` busy over a 0.5 s window.
 * Gives up after `maxMs` and returns the last busy share (the caller may warn).
 */
export async function waitForIdle(threshold = 0.1, maxMs = 20_000): Promise<{ busy: number; waitedMs: number; idle: boolean }> {
  const start = performance.now();
  let busy = 1;
  for (let i = 0; i < 1000 && performance.now() - start < maxMs; i++) {
    busy = await machineBusy(500);
    if (busy < threshold) return { busy, waitedMs: performance.now() - start, idle: true };
  }
  return { busy, waitedMs: performance.now() - start, idle: false };
}

export function machineDescription(): string {
  const c = cpus();
  const model = c[0]?.model?.trim() ?? "unknown CPU";
  let kernel = "";
  try {
    kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  } catch {
    // not fatal
  }
  return `${c.length} cores (${model}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${kernel}`;
}

// ---------------------------------------------------------------- ports and sockets

/** Asks the kernel for a free loopback TCP port (bind to port 0, read it, close). */
export function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/**
 * Sends one RESP command on a fresh connection and returns the raw reply text
 * (the first complete line, or a whole bulk string). Rejects on error or after `timeoutMs`.
 */
export function respCommand(port: number, args: string[], timeoutMs = 2000, host = "127.0.0.1"): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = "";
    let done = false;
    const finish = (err: Error | null, val?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        sock?.end();
      } catch {
        // ignore
      }
      if (err) reject(err);
      else resolve(val!);
    };
    const timer = setTimeout(() => finish(new Error(`no reply to ${args[0]} within ${timeoutMs} ms`)), timeoutMs);
    let sock: Awaited<ReturnType<typeof Bun.connect>> | undefined;
    const payload = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`;
    Bun.connect({
      hostname: host,
      port,
      socket: {
        open(s) {
          s.write(payload);
        },
        data(_s, d) {
          buf += d.toString("latin1");
          const nl = buf.indexOf("\r\n");
          if (nl < 0) return;
          if (buf[0] === "$") {
            const len = Number(buf.slice(1, nl));
            if (len < 0) return finish(null, buf.slice(0, nl));
            if (buf.length >= nl + 2 + len + 2) return finish(null, buf.slice(nl + 2, nl + 2 + len));
            return;
          }
          finish(null, buf.slice(0, nl));
        },
        close() {
          finish(new Error("connection closed before a reply"));
        },
        error(_s, e) {
          finish(e);
        },
        connectError(_s, e) {
          finish(e);
        },
      },
    }).then(
      (s) => {
        sock = s;
        if (done) s.end();
      },
      (e) => finish(e instanceof Error ? e : new Error(String(e))),
    );
  });
}

// ---------------------------------------------------------------- servers

export interface Server {
  name: string;
  port: number;
  pid: number;
  proc: Subprocess;
  dir: string;
  logPath: string;
  stop(): Promise<void>;
}

/** Splits a command line on whitespace, honouring '...' and "..." quotes (no escapes). */
export function splitCommandLine(s: string): string[] {
  const out: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  let cur: string | null = null;
  let last = -1;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const piece = m[1] ?? m[2] ?? m[3] ?? "";
    // adjacent pieces without whitespace between them belong to one word
    if (cur !== null && m.index === last) cur += piece;
    else {
      if (cur !== null) out.push(cur);
      cur = piece;
    }
    last = re.lastIndex;
  }
  if (cur !== null) out.push(cur);
  return out;
}

function tail(path: string, bytes = 2000): string {
  try {
    const s = readFileSync(path, "utf8");
    return s.slice(-bytes);
  } catch {
    return "";
  }
}

/**
 * Spawns a server (argv already filled in), with stdout+stderr to a log file in `dir`,
 * and waits until it answers PING with +PONG (or, with `ready`, until that returns null
 * instead of a reason it is not ready yet). Throws (with the log tail) if it exits or
 * does not answer within `readyMs`. The process is killed on exit of this script.
 */
export async function startServer(
  name: string,
  argv: string[],
  port: number,
  dir: string,
  opts: { readyMs?: number; cwd?: string; ready?: () => Promise<string | null>; env?: Record<string, string | undefined> } = {},
): Promise<Server> {
  const readyMs = opts.readyMs ?? 15_000;
  const logPath = join(dir, `${name}.log`);
  const logFd = openSync(logPath, "a");
  let proc: Subprocess;
  try {
    proc = Bun.spawn(argv, { cwd: opts.cwd, env: opts.env, stdin: "ignore", stdout: logFd, stderr: logFd });
  } finally {
    closeSync(logFd);
  }
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  const killSync = () => {
    if (!exited) {
      try {
        proc.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  };
  onCleanup(killSync);

  const start = performance.now();
  let lastErr = "";
  for (let i = 0; i < 2000; i++) {
    if (exited) {
      throw new Error(`${name} exited with code ${proc.exitCode} before it was ready: ${argv.join(" ")}\n--- ${logPath} ---\n${tail(logPath)}`);
    }
    if (performance.now() - start > readyMs) {
      killSync();
      throw new Error(`${name} did not answer PING within ${readyMs} ms (${lastErr}): ${argv.join(" ")}\n--- log ---\n${tail(logPath)}`);
    }
    try {
      if (opts.ready) {
        const why = await opts.ready();
        if (why === null) break;
        lastErr = why;
      } else {
        const r = await respCommand(port, ["PING"], 1000);
        if (r === "+PONG") break;
        lastErr = `PING replied ${JSON.stringify(r)}`;
      }
    } catch (e) {
      lastErr = e instanceof Error ? e.message : String(e);
    }
    await sleep(25);
  }

  const server: Server = {
    name,
    port,
    pid: proc.pid,
    proc,
    dir,
    logPath,
    async stop() {
      if (exited) return;
      try {
        proc.kill("SIGTERM");
      } catch {
        return;
      }
      const t = await Promise.race([proc.exited.then(() => "ok"), sleep(5000).then(() => "timeout")]);
      if (t === "timeout") {
        killSync();
        await Promise.race([proc.exited, sleep(2000)]);
      }
    },
  };
  return server;
}

/** True when the server process is still running. */
export function isAlive(s: Server): boolean {
  return s.proc.exitCode === null && s.proc.signalCode === null && existsSync(`/proc/${s.pid}/stat`);
}

// ---------------------------------------------------------------- bulk load

/**
 * Loads `count` keys `key:%012d` (16 bytes) with `valueBytes`-byte values into a RESP server
 * with pipelined SETs over one connection: the RESP stream is generated in chunks and written
 * with backpressure, keeping at most `window` commands unanswered. Every reply must be a
 * simple string (+OK); an error reply aborts. Bounded by `timeoutMs`.
 */
export async function bulkLoad(
  port: number,
  count: number,
  valueBytes: number,
  opts: { timeoutMs?: number; chunk?: number; window?: number } = {},
): Promise<{ ms: number }> {
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const chunkCmds = opts.chunk ?? 8192;
  const window = opts.window ?? 65_536;
  if (valueBytes < 12) throw new Error("valueBytes must be >= 12");
  const head = Buffer.from(`*3\r\n$3\r\nSET\r\n$16\r\nkey:`);
  const mid = Buffer.from(`\r\n$${valueBytes}\r\n`);
  const cmdLen = head.length + 12 + mid.length + valueBytes + 2;
  // Template for one chunk: only the 12-digit number (twice: key and value prefix) changes per command.
  const tmpl = Buffer.alloc(cmdLen * chunkCmds);
  for (let i = 0; i < chunkCmds; i++) {
    let o = i * cmdLen;
    o += head.copy(tmpl, o);
    o += 12;
    o += mid.copy(tmpl, o);
    tmpl.fill("v", o, o + valueBytes);
    o += valueBytes;
    tmpl.write("\r\n", o, "latin1");
  }
  const keyOff = head.length;
  const valOff = head.length + 12 + mid.length;
  const digits = Buffer.alloc(12);
  const putNum = (buf: Buffer, off: number, n: number) => {
    for (let d = 11; d >= 0; d--) {
      digits[d] = 48 + (n % 10);
      n = Math.floor(n / 10);
    }
    digits.copy(buf, off);
  };

  const started = performance.now();
  return await new Promise((resolve, reject) => {
    let sent = 0; // commands fully handed to the kernel or queued in `pending`
    let replies = 0;
    let atLineStart = true;
    let pending: Buffer | null = null; // unwritten remainder
    let done = false;
    let sock: Awaited<ReturnType<typeof Bun.connect>> | undefined;
    const finish = (err: Error | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        sock?.end();
      } catch {
        // ignore
      }
      if (err) reject(err);
      else resolve({ ms: performance.now() - started });
    };
    const timer = setTimeout(
      () => finish(new Error(`bulk load timed out after ${timeoutMs} ms (${replies}/${count} replies)`)),
      timeoutMs,
    );

    const pump = (s: NonNullable<typeof sock>) => {
      for (let guard = 0; guard < 100_000 && !done; guard++) {
        if (pending) {
          const w = s.write(pending);
          if (w < 0) return finish(new Error("socket closed during bulk load"));
          if (w < pending.length) {
            pending = pending.subarray(w);
            return; // wait for drain
          }
          pending = null;
        }
        if (sent >= count || sent - replies >= window) return;
        const n = Math.min(chunkCmds, count - sent);
        const buf = Buffer.allocUnsafe(n * cmdLen);
        tmpl.copy(buf, 0, 0, n * cmdLen);
        for (let i = 0; i < n; i++) {
          const k = sent + i;
          putNum(buf, i * cmdLen + keyOff, k);
          putNum(buf, i * cmdLen + valOff, k);
        }
        sent += n;
        pending = buf;
      }
    };

    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          sock = s;
          pump(s);
        },
        drain(s) {
          pump(s);
        },
        data(s, d) {
          for (let i = 0; i < d.length; i++) {
            const c = d[i]!;
            if (atLineStart && c !== 43 /* + */) {
              return finish(new Error(`unexpected reply during bulk load: ${JSON.stringify(d.subarray(i, i + 120).toString("latin1"))}`));
            }
            atLineStart = c === 10;
            if (c === 10) replies++;
          }
          if (replies >= count) return finish(null);
          pump(s);
        },
        close() {
          finish(new Error(`connection closed during bulk load (${replies}/${count} replies)`));
        },
        error(_s, e) {
          finish(e);
        },
        connectError(_s, e) {
          finish(e);
        },
      },
    }).catch((e) => finish(e instanceof Error ? e : new Error(String(e))));
  });
}

/**
 * A time budget split evenly over a benchmark's rounds: once a round has used its share, no more
 * reruns and only short waits for idle in that round, so a busy machine cannot stretch the run
 * without bound (and the first round cannot use up the whole budget).
 */
export class RoundBudget {
  private roundStart = performance.now();
  private noted = false;

  constructor(
    private readonly budgetMs: number,
    private readonly rounds: number,
    private readonly idleMaxMs: number,
  ) {}

  startRound(): void {
    this.roundStart = performance.now();
    this.noted = false;
  }

  /** Whether this round is still within its share of the budget (notes once when it is not). */
  within(): boolean {
    const share = this.budgetMs / this.rounds;
    const ok = performance.now() - this.roundStart < share;
    if (!ok && !this.noted) {
      this.noted = true;
      console.log(`  note: this round's time budget (${(share / 1000).toFixed(0)} s) is used: no more reruns, waits for idle cut to 1 s`);
    }
    return ok;
  }

  /** Waits (bounded) for the machine to be idle before a run; returns how busy it still was. */
  async idleGate(label: string): Promise<number> {
    const r = await waitForIdle(0.1, this.within() ? this.idleMaxMs : 1000);
    if (!r.idle) console.log(`  warning: machine still ${(r.busy * 100).toFixed(0)}% busy after ${(r.waitedMs / 1000).toFixed(0)} s; running ${label} anyway`);
    return r.busy;
  }
}
