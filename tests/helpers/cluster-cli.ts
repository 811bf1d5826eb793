// For tests that drive `kv cluster ...` and `kv serve` processes through the compiled binary: temp
// cluster dirs, free port ranges, bounded runs, and a cleanup after the file that kills whatever runs
// on those dirs (recorded in cluster.json or holding a node's LOCK), even when a test failed.
import { afterAll } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ClusterFile, readClusterFile } from "../../src/cli/cluster-layout.ts";
import { isAlive, lockPid, portProblem } from "../../src/cli/cluster-proc.ts";
import { type Client, createClient, OutcomeUnknownError, ServerError } from "../../src/client/index.ts";
import { KV_BIN } from "./server.ts";

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ClusterCliHarness {
  /** Pids to kill after the file (the harness adds the ones it starts). */
  readonly started: number[];
  /** A new temp root (removed after the file). */
  tempRoot(): string;
  /** `<new temp root>/cluster`, whose nodes are killed after the file. */
  clusterDir(): string;
  /** Runs `argv` (killed after 60 s). */
  run(argv: string[]): Promise<Run>;
  /** Runs `./kv <args>`. */
  kv(...args: string[]): Promise<Run>;
}

/** Registers the cleanup (afterAll) of the calling test file; temp dirs are named `<prefix>XXXXXX`. */
export function clusterCliHarness(prefix: string): ClusterCliHarness {
  const tempRoots: string[] = [];
  const clusterDirs: string[] = [];
  const started: number[] = [];
  afterAll(async () => {
    const pids = new Set(started);
    for (const dir of clusterDirs) {
      let file: ClusterFile | undefined;
      try {
        file = readClusterFile(dir);
      } catch {}
      for (const n of file?.nodes ?? []) pids.add(n.pid);
      for (const name of existsSync(dir) ? readdirSync(dir) : []) {
        const pid = lockPid(join(dir, name));
        if (pid !== undefined) pids.add(pid);
      }
    }
    for (const pid of pids) {
      if (pid > 0 && pid !== process.pid && isAlive(pid)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
    }
    const deadline = Date.now() + 5_000;
    while ([...pids].some((pid) => pid > 0 && pid !== process.pid && isAlive(pid)) && Date.now() < deadline) await Bun.sleep(20);
    for (const d of tempRoots) rmSync(d, { recursive: true, force: true });
  });
  const tempRoot = () => {
    const root = mkdtempSync(join(tmpdir(), prefix));
    tempRoots.push(root);
    return root;
  };
  const run = async (argv: string[]): Promise<Run> => {
    const p = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    started.push(p.pid);
    const killer = setTimeout(() => p.kill("SIGKILL"), 60_000);
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    clearTimeout(killer);
    return { code, stdout, stderr };
  };
  return {
    started,
    tempRoot,
    clusterDir() {
      const d = join(tempRoot(), "cluster");
      clusterDirs.push(d);
      return d;
    },
    run,
    kv: (...args: string[]) => run([KV_BIN, ...args]),
  };
}

/**
 * A base port with `count` client ports and their peer ports (+10000) free, all below Linux's
 * ephemeral range (32768 up): a node started later (a restart, `kv cluster add`) binds its ports
 * when the cluster's own outgoing connections may have taken any port of that range.
 */
export function freeBasePort(count: number): number {
  for (let tries = 0; tries < 200; tries++) {
    const base = 12_000 + Math.floor(Math.random() * (32_768 - 10_000 - 12_000 - count));
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = portProblem(base + i) === null && portProblem(base + i + 10_000) === null;
    if (ok) return base;
  }
  throw new Error("no free port range found in 200 tries");
}

export interface SetWriter {
  /** i of every `SET <prefix>:<i>` acknowledged, in order. */
  readonly acked: number[];
  readonly errors: string[];
  stop(): Promise<void>;
}

/**
 * One client of the project's library writing `SET <prefix>:<i> <i>` (with `EX ttl(i)` when given),
 * one at a time, until stopped, or `maxWrites`, or `maxMs`. `retryUncertain`: a write whose outcome
 * is unknown is sent again (the same SET: idempotent) and not counted as an error; otherwise every
 * error, and every reply but OK, is recorded.
 */
export function setWriter(addrs: string[], prefix: string, o: { retryUncertain: boolean; ttl?: (i: number) => number; maxWrites: number; maxMs: number }): SetWriter {
  const client: Client = createClient({ addrs, timeoutMs: 10_000 });
  const acked: number[] = [];
  const errors: string[] = [];
  let stop = false;
  const done = (async () => {
    const deadline = Date.now() + o.maxMs;
    for (let i = 0; i < o.maxWrites && !stop && Date.now() < deadline; i++) {
      const argv = ["SET", `${prefix}:${i}`, String(i), ...(o.ttl === undefined ? [] : ["EX", String(o.ttl(i))])];
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          const reply = await client.command(argv);
          if (reply === "OK") acked.push(i);
          else errors.push(`${prefix}:${i}: replied ${String(reply)}`);
          break;
        } catch (e) {
          if (o.retryUncertain && (e instanceof OutcomeUnknownError || (e instanceof ServerError && e.prefix === "UNCERTAIN"))) continue;
          errors.push(`${prefix}:${i}: ${(e as Error).message}`);
          break;
        }
      }
    }
  })();
  return {
    acked,
    errors,
    async stop(): Promise<void> {
      stop = true;
      await done;
      client.destroy();
    },
  };
}

/** Polls `f` (a throw counts as not yet) every 50 ms until it returns a value that is not undefined; fails after `ms`. */
export async function until<T>(what: string, ms: number, f: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    let v: T | undefined;
    try {
      v = await f();
    } catch {}
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await Bun.sleep(50);
  }
}

/**
 * `kv cluster up <n> --detach` on a new cluster dir and a free port range below the ephemeral
 * range (with `serveFlags` for every node); its nodes are killed after the file. Fails the test unless
 * it started cleanly.
 */
export async function upDetached(h: ClusterCliHarness, n: number, serveFlags: readonly string[] = []): Promise<{ dir: string; base: number; addrs: string[] }> {
  const dir = h.clusterDir();
  const base = freeBasePort(n);
  const up = await h.kv("cluster", "up", String(n), "--base-port", String(base), "--data-dir", dir, "--detach", ...serveFlags);
  if (up.code !== 0 || up.stderr !== "") throw new Error(`kv cluster up ${n} failed (exit ${up.code}): ${up.stderr}${up.stdout}`);
  for (const node of readClusterFile(dir)!.nodes) h.started.push(node.pid);
  return { dir, base, addrs: Array.from({ length: n }, (_, i) => `127.0.0.1:${base + i}`) };
}
