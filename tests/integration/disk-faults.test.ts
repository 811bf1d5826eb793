// Disk faults against the real binary: a full disk and a read-only data dir (issue 3 item 5).
// Errors reach the clients as -UNCERTAIN / -MISCONF replies, reads keep working, and nothing
// that was acknowledged is lost (checked again after a restart on a copy of the data dir).
//
// Real faults need a private mount namespace (unshare -m, as root): kv runs inside it on a tiny
// tmpfs (ENOSPC) or on a read-only mount (EROFS). A tmpfs cannot be remounted read-only while kv
// holds a log segment open for writing (EBUSY), so "becomes read-only while running" uses an ext4
// image on a loop device that is aborted (`mount -o remount,abort`): the kernel then turns it
// read-only under the writer, as errors=remount-ro does after a disk error.
// Without mount rights these tests FAIL (they do not skip): CI runs them as root.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket, Subprocess } from "bun";
import { ErrorReply, NEED_MORE, ReplyParser, type RespValue } from "../../src/resp/reply-parser.ts";
import { KV_BIN, startKv } from "../helpers/server.ts";

const dirs: string[] = [];
const procs: Subprocess[] = [];
const kvPids: number[] = [];
function tempDir(prefix = "kv-diskf-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const pid of kvPids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  for (const p of procs) {
    if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    await p.exited;
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const isRoot = process.getuid?.() === 0;
const mountCheck = Bun.spawnSync(
  ["sh", "-c", 'd=$(mktemp -d) && unshare -m --propagation private mount -t tmpfs -o size=64k tmpfs "$d"; r=$?; rmdir "$d"; exit $r'],
  { stderr: "pipe" },
);
const canMount = isRoot && mountCheck.exitCode === 0;
const NO_MOUNT =
  `these tests need root with the right to make a mount namespace (unshare -m) to mount a tmpfs / loop device ` +
  `(CI runs as root); uid=${process.getuid?.()}, unshare: ${mountCheck.stderr.toString().trim() || `exit ${mountCheck.exitCode}`}`;
function needMount(): void {
  if (!canMount) throw new Error(NO_MOUNT);
}

test("mount namespace available (these tests need root for unshare -m)", () => {
  expect(existsSync(KV_BIN)).toBe(true);
  if (!canMount) throw new Error(NO_MOUNT);
});

// ---------------------------------------------------------------------------------------------
// kv inside a private mount namespace

interface NsKv {
  port: number;
  /** kv's pid (the sh that owns the namespace is its parent). */
  pid: number;
  output(): string;
  /** SIGTERM to kv; resolves with kv's exit code once the script (and its copy-out) finished. */
  stop(): Promise<number>;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Runs `setup` (sh, inside the namespace, `set -e`), then kv on `dataDir` in the background; after
 * kv exits runs `after` (e.g. copy the data dir out) and exits with kv's code. Sends "KVEXIT n".
 */
function nsScript(setup: string, dataDir: string, args: string[], after = ""): string {
  return [
    "set -e",
    setup,
    "set +e",
    `${q(KV_BIN)} serve --port 0 --host 127.0.0.1 --data-dir ${q(dataDir)} ${args.map(q).join(" ")} &`,
    "pid=$!",
    "wait $pid; code=$?",
    `echo "KVEXIT $code"`,
    after,
    "exit $code",
  ].join("\n");
}

function spawnNs(script: string): { proc: Subprocess<"ignore", "pipe", "pipe">; text: () => string } {
  const proc = Bun.spawn(["unshare", "-m", "--propagation", "private", "sh", "-c", script], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  procs.push(proc);
  let text = "";
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    for await (const c of s) text += dec.decode(c, { stream: true });
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  return { proc, text: () => text };
}

async function startNsKv(script: string, timeoutMs = 10_000): Promise<NsKv> {
  const { proc, text } = spawnNs(script);
  const deadline = Date.now() + timeoutMs;
  let m: RegExpExecArray | null = null;
  while (Date.now() < deadline) {
    m = /listening on 127\.0\.0\.1:(\d+)\b.*\(.*pid (\d+)\)/.exec(text());
    if (m || proc.exitCode !== null) break;
    await Bun.sleep(10);
  }
  if (!m) {
    proc.kill("SIGKILL");
    await proc.exited;
    throw new Error(`kv did not start in the namespace (exit ${proc.exitCode}): ${text()}`);
  }
  const pid = Number(m[2]);
  kvPids.push(pid);
  return {
    port: Number(m[1]),
    pid,
    output: text,
    async stop() {
      try {
        process.kill(pid, "SIGTERM");
      } catch {}
      const killer = setTimeout(() => {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }, 15_000);
      await proc.exited;
      clearTimeout(killer);
      const e = /KVEXIT (\d+)/.exec(text());
      if (!e) throw new Error(`no kv exit code from the namespace script: ${text()}`);
      return Number(e[1]);
    },
  };
}

/** Runs the script to its end (bounded) and returns its exit code and output. */
async function runNs(script: string, timeoutMs = 15_000): Promise<{ code: number; out: string }> {
  const { proc, text } = spawnNs(script);
  const t = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const code = await proc.exited;
  clearTimeout(t);
  // let the pumps finish
  await Bun.sleep(20);
  return { code, out: text() };
}

// ---------------------------------------------------------------------------------------------
// A minimal pipelining RESP client that sees every reply and notices a dropped connection.

class Conn {
  private parser = new ReplyParser();
  private waiting: { resolve: (v: RespValue) => void; reject: (e: Error) => void }[] = [];
  closed = false;
  private constructor(private socket: Socket<undefined> | null) {}

  static async open(port: number): Promise<Conn> {
    const c = new Conn(null);
    c.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data(_s, chunk) {
          c.parser.push(chunk);
          for (;;) {
            const v = c.parser.next("utf8");
            if (v === NEED_MORE) break;
            const w = c.waiting.shift();
            if (!w) throw new Error(`unsolicited reply ${JSON.stringify(v)}`);
            w.resolve(v);
          }
        },
        close() {
          c.fail();
        },
        error() {
          c.fail();
        },
      },
    });
    return c;
  }

  private fail(): void {
    this.closed = true;
    const w = this.waiting;
    this.waiting = [];
    for (const x of w) x.reject(new Error("connection closed by the server"));
  }

  /** Sends several commands at once; resolves with their replies in order (bounded by timeoutMs). */
  pipeline(cmds: string[][], timeoutMs = 5_000): Promise<RespValue[]> {
    if (this.closed) return Promise.reject(new Error("connection closed by the server"));
    let out = "";
    for (const argv of cmds) {
      out += `*${argv.length}\r\n`;
      for (const a of argv) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    }
    const ps = cmds.map(() => new Promise<RespValue>((resolve, reject) => this.waiting.push({ resolve, reject })));
    const buf = Buffer.from(out);
    const n = this.socket!.write(buf);
    if (n !== buf.length) throw new Error(`short write in test client (${n}/${buf.length})`);
    let timer: Timer | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no reply within ${timeoutMs} ms (server hung?)`)), timeoutMs);
    });
    return Promise.race([Promise.all(ps), timeout]).finally(() => clearTimeout(timer));
  }

  async cmd(...argv: string[]): Promise<RespValue> {
    return (await this.pipeline([argv]))[0]!;
  }

  close(): void {
    this.socket?.end();
  }
}

const UNCERTAIN = /^UNCERTAIN write outcome unknown: /;
const MISCONF = /^MISCONF kv cannot write to its log, so writes are refused until the node restarts \(/;

interface WriteLog {
  acked: Map<string, string>;
  uncertain: Map<string, string>;
  refused: Map<string, string>;
  /** Replies that are neither +OK nor UNCERTAIN/MISCONF errors (must stay empty). */
  bad: string[];
}

function valueFor(key: string, size: number): string {
  const head = `${key}=`;
  return head + "x".repeat(Math.max(0, size - head.length));
}

/**
 * Several clients pipeline SETs of distinct keys until each has seen a refused write (MISCONF)
 * or the bounds run out. Every reply is classified.
 */
async function writeUntilRefused(
  conns: Conn[],
  opts: { valueBytes: number; batch: number; maxPerClient: number; maxMs: number; prefix: string },
): Promise<WriteLog> {
  const log: WriteLog = { acked: new Map(), uncertain: new Map(), refused: new Map(), bad: [] };
  const deadline = Date.now() + opts.maxMs;
  await Promise.all(
    conns.map(async (c, ci) => {
      let n = 0;
      let refusedSeen = 0;
      while (n < opts.maxPerClient && Date.now() < deadline && refusedSeen < 2 * opts.batch) {
        const keys: string[] = [];
        for (let i = 0; i < opts.batch; i++) keys.push(`${opts.prefix}${ci}:${n++}`);
        let replies: RespValue[];
        try {
          replies = await c.pipeline(keys.map((k) => ["SET", k, valueFor(k, opts.valueBytes)]));
        } catch (e) {
          log.bad.push(`client ${ci}: ${(e as Error).message}`);
          return;
        }
        replies.forEach((r, i) => {
          const k = keys[i]!;
          const v = valueFor(k, opts.valueBytes);
          if (r === "OK") log.acked.set(k, v);
          else if (r instanceof ErrorReply && UNCERTAIN.test(r.message)) log.uncertain.set(k, v);
          else if (r instanceof ErrorReply && MISCONF.test(r.message)) {
            log.refused.set(k, v);
            refusedSeen++;
          } else log.bad.push(`client ${ci} SET ${k}: ${r instanceof ErrorReply ? `-${r.message}` : JSON.stringify(r)}`);
        });
      }
    }),
  );
  return log;
}

/** Every acknowledged key has its value; refused (MISCONF) keys are absent; uncertain keys are absent or whole. */
async function checkData(c: Conn, log: WriteLog, uncertainMayExist: boolean): Promise<void> {
  const check = async (m: Map<string, string>, kind: "acked" | "refused" | "uncertain") => {
    const keys = [...m.keys()];
    for (let i = 0; i < keys.length; i += 200) {
      const chunk = keys.slice(i, i + 200);
      const got = (await c.cmd("MGET", ...chunk)) as (string | null)[];
      chunk.forEach((k, j) => {
        const want = m.get(k)!;
        if (kind === "acked") expect({ k, v: got[j] === want ? "ok" : got[j] }).toEqual({ k, v: "ok" });
        else if (kind === "refused" || !uncertainMayExist) expect({ k, v: got[j] }).toEqual({ k, v: null });
        else expect({ k, ok: got[j] === null || got[j] === want }).toEqual({ k, ok: true });
      });
    }
  };
  await check(log.acked, "acked");
  await check(log.refused, "refused");
  await check(log.uncertain, "uncertain");
}

/** The server still answers every client: PING, and a GET of an acknowledged key. */
async function checkStillServing(conns: Conn[], log: WriteLog): Promise<void> {
  const someAcked = [...log.acked.entries()].slice(-1)[0];
  for (const c of conns) {
    expect(c.closed).toBe(false);
    expect(await c.cmd("PING")).toBe("PONG");
    if (someAcked) expect(await c.cmd("GET", someAcked[0])).toBe(someAcked[1]);
    expect(await c.cmd("DBSIZE")).toBe(log.acked.size);
    // a later write is refused outright, with the same message every time
    const r = await c.cmd("SET", "after-failure", "1");
    expect(r).toBeInstanceOf(ErrorReply);
    expect((r as ErrorReply).message).toMatch(MISCONF);
  }
}

/** Waits (bounded) until kv's log takes no write for 300 ms (INFO persistence kv_wal_batches stays put). */
async function logIdle(c: Conn): Promise<void> {
  const batches = async () => /kv_wal_batches:(\d+)/.exec(String(await c.cmd("INFO", "persistence")))![1];
  let last = await batches();
  let sameSince = Date.now();
  const deadline = Date.now() + 5_000;
  while (Date.now() - sameSince < 300) {
    if (Date.now() > deadline) throw new Error("kv's log kept being written for 5 s with no client writing");
    await Bun.sleep(25);
    const now = await batches();
    if (now !== last) {
      last = now;
      sameSince = Date.now();
    }
  }
}

/** Starts a normal kv on the host copy of the data dir and checks the data there. */
async function checkAfterRestart(copyDataDir: string, log: WriteLog): Promise<void> {
  const kv = await startKv([], { dataDir: copyDataDir });
  try {
    const c = await Conn.open(kv.port);
    await checkData(c, log, true);
    expect(await c.cmd("GET", "after-failure")).toBeNull();
    c.close();
  } finally {
    expect(await kv.stop()).toBe(0);
  }
}

// ---------------------------------------------------------------------------------------------

test("full disk (4 MB tmpfs): failed writes get UNCERTAIN/MISCONF, reads keep working, every acknowledged write survives a restart", async () => {
  needMount();
  const mnt = tempDir();
  const copy = tempDir();
  const kv = await startNsKv(
    nsScript(
      `mount -t tmpfs -o size=4m tmpfs ${q(mnt)}`,
      join(mnt, "data"),
      ["--wal-segment-bytes", "256kb", "--snapshot-log-bytes", "1gb"],
      `cp -a ${q(join(mnt, "data"))} ${q(join(copy, "data"))}`,
    ),
  );
  const conns = await Promise.all([0, 1, 2, 3].map(() => Conn.open(kv.port)));
  const log = await writeUntilRefused(conns, { valueBytes: 2000, batch: 16, maxPerClient: 3000, maxMs: 10_000, prefix: "full" });

  expect(log.bad).toEqual([]);
  expect(log.acked.size).toBeGreaterThan(100);
  // the disk did fill: the first failing batch is UNCERTAIN (ENOSPC), later writes MISCONF
  expect(log.uncertain.size + log.refused.size).toBeGreaterThan(0);
  expect(log.refused.size).toBeGreaterThan(0);
  expect(kv.output()).toMatch(/ENOSPC/);

  await checkStillServing(conns, log);
  // INFO persistence names the failure (Redis's aof_last_write_status).
  const info = String(await conns[0]!.cmd("INFO", "persistence"));
  expect(info).toContain("aof_last_write_status:err");
  expect(info).toMatch(/kv_log_error:.*ENOSPC/);
  await checkData(conns[0]!, log, false); // unapplied while running: uncertain writes are not visible
  for (const c of conns) c.close();

  expect(await kv.stop()).toBe(0);
  await checkAfterRestart(join(copy, "data"), log);
}, 45_000);

test("read-only data dir at startup: kv serve exits 1 with one line naming the dir", async () => {
  needMount();
  // A data dir with data in it, written by a first run.
  const seed = tempDir();
  const first = await startKv([], { dataDir: join(seed, "data") });
  const c = await Conn.open(first.port);
  expect(await c.cmd("SET", "k", "v")).toBe("OK");
  c.close();
  expect(await first.stop()).toBe(0);

  const mnt = tempDir();
  const variants: [string, string][] = [
    // a tmpfs holding the data, remounted read-only
    ["tmpfs remount,ro", `mount -t tmpfs -o size=4m tmpfs ${q(mnt)}; cp -a ${q(join(seed, "data"))} ${q(join(mnt, "data"))}; mount -o remount,ro ${q(mnt)}`],
    // a read-only bind mount of the host dir
    ["ro bind mount", `mount --bind ${q(seed)} ${q(mnt)}; mount -o remount,ro,bind ${q(mnt)}`],
  ];
  for (const [name, setup] of variants) {
    const dataDir = join(mnt, "data");
    const { code, out } = await runNs(`set -e\n${setup}\nset +e\nexec ${q(KV_BIN)} serve --port 0 --host 127.0.0.1 --data-dir ${q(dataDir)}`);
    expect({ name, code }).toEqual({ name, code: 1 });
    const lines = out.trim().split("\n").filter((l) => l.trim() !== "");
    expect({ name, lines: lines.length }).toEqual({ name, lines: 1 });
    expect(lines[0]).toContain(`cannot use data dir ${dataDir}`);
    expect(lines[0]).toMatch(/read-only|EROFS/);
    expect(out).not.toMatch(/listening on/);
  }
}, 30_000);

test("data dir turns read-only while kv runs (ext4 aborted): UNCERTAIN/MISCONF, reads work, acknowledged data intact after restart", async () => {
  needMount();
  const work = tempDir();
  const img = join(work, "fs.img");
  const mnt = join(work, "mnt");
  const copy = join(work, "copy");
  const mk = Bun.spawnSync(["sh", "-c", `mkdir -p ${q(mnt)} ${q(copy)} && truncate -s 16M ${q(img)} && mkfs.ext4 -q -F ${q(img)}`], { stderr: "pipe" });
  if (mk.exitCode !== 0) throw new Error(`cannot make an ext4 image (mkfs.ext4 needed): ${mk.stderr}`);
  const kv = await startNsKv(
    nsScript(
      `mount -o loop ${q(img)} ${q(mnt)}`,
      join(mnt, "data"),
      ["--wal-segment-bytes", "1mb", "--snapshot-log-bytes", "1gb"],
      // Remount the image so the journal is replayed: the copy is what the disk really holds.
      `umount ${q(mnt)} && mount -o loop ${q(img)} ${q(mnt)} && cp -a ${q(join(mnt, "data"))} ${q(join(copy, "data"))}`,
    ),
  ).catch((e) => {
    throw new Error(`${(e as Error).message}\n(this test needs loop devices: mount -o loop)`);
  });
  const conns = await Promise.all([0, 1, 2].map(() => Conn.open(kv.port)));
  // Some acknowledged writes first.
  const before = await writeUntilRefused(conns, { valueBytes: 100, batch: 10, maxPerClient: 50, maxMs: 5_000, prefix: "pre" });
  expect(before.bad).toEqual([]);
  expect(before.acked.size).toBe(150);
  // Let the log settle first: a Raft node writes its commit index alone on a tick after the last
  // writes, and that write must not be the one that meets the read-only fs (it carries no client
  // write, so no outcome would be uncertain).
  await logIdle(conns[0]!);

  // The fs goes read-only under kv (as after a disk error with errors=remount-ro).
  const abort = Bun.spawnSync(["nsenter", "-t", String(kv.pid), "-m", "mount", "-o", "remount,abort", mnt], { stderr: "pipe" });
  expect({ abort: abort.exitCode, err: abort.stderr.toString() }).toEqual({ abort: 0, err: "" });

  const log = await writeUntilRefused(conns, { valueBytes: 100, batch: 8, maxPerClient: 200, maxMs: 5_000, prefix: "ro" });
  expect(log.bad).toEqual([]);
  expect(log.uncertain.size).toBeGreaterThan(0); // the batch that hit EROFS
  expect(log.refused.size).toBeGreaterThan(0);
  expect(kv.output()).toMatch(/EROFS|read-only/i);
  for (const [k, v] of before.acked) log.acked.set(k, v);

  await checkStillServing(conns, log);
  expect(String(await conns[0]!.cmd("INFO", "persistence"))).toMatch(/aof_last_write_status:err\r\nkv_log_error:.*(EROFS|read-only)/i);
  await checkData(conns[0]!, log, false);
  for (const c of conns) c.close();

  expect(await kv.stop()).toBe(0);
  await checkAfterRestart(join(copy, "data"), log);
}, 45_000);
