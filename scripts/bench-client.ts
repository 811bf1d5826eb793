// Client benchmark: 50 concurrent callers doing GET/SET over ONE client instance, the kv client
// against ioredis 6 on the same server in the same run, interleaved, median of 3 rounds.
//
//   bun run build && bun scripts/bench-client.ts [--seconds 3] [--callers 50] [--rounds 3]
//                                                [--server kv|redis] [--addr host:port] [--value-bytes 16]
//
// --server kv (default) starts ./kv serve on a free port with a temp data dir; --server redis
// starts redis-server (no persistence); --addr uses a running server.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Redis from "ioredis";
import { createClient } from "../src/client/index.ts";

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i !== -1 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

const seconds = Number(flag("seconds", "3"));
const callers = Number(flag("callers", "50"));
const rounds = Number(flag("rounds", "3"));
const serverKind = flag("server", "kv");
const valueBytes = Number(flag("value-bytes", "16"));
const root = join(import.meta.dir, "..");

interface Server {
  host: string;
  port: number;
  stop(): Promise<void>;
}

async function waitForLine(proc: ReturnType<typeof Bun.spawn>, re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  let text = "";
  const dec = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s) text += dec.decode(c, { stream: true });
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>);
  void pump(proc.stderr as ReadableStream<Uint8Array>);
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const m = re.exec(text);
    if (m) return m;
    if (proc.exitCode !== null) break;
    await Bun.sleep(10);
  }
  proc.kill("SIGKILL");
  throw new Error(`server did not start: ${text}`);
}

async function freePort(): Promise<number> {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

async function startServer(): Promise<Server> {
  const given = process.argv.includes("--addr") ? flag("addr", "") : "";
  if (given) {
    const [host, port] = given.split(":");
    return { host: host!, port: Number(port), stop: async () => {} };
  }
  if (serverKind === "redis") {
    const port = await freePort();
    const proc = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdout: "pipe",
      stderr: "pipe",
    });
    await waitForLine(proc, /Ready to accept connections/, 10_000);
    return { host: "127.0.0.1", port, stop: async () => void (proc.kill(), await proc.exited) };
  }
  const dir = mkdtempSync(join(tmpdir(), "kv-bench-client-"));
  const proc = Bun.spawn([join(root, "kv"), "serve", "--port", "0", "--host", "127.0.0.1", "--data-dir", dir, "--log-level", "info"], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  // The listening line is logged at info; fall back to polling the port if the level hides it.
  let port = 0;
  try {
    const m = await waitForLine(proc, /listening on 127\.0\.0\.1:(\d+)/, 10_000);
    port = Number(m[1]);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    host: "127.0.0.1",
    port,
    stop: async () => {
      proc.kill();
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type Ops = { get(k: string): Promise<unknown>; set(k: string, v: string): Promise<unknown>; close(): Promise<unknown> };

async function makeKv(s: Server): Promise<Ops> {
  const c = createClient({ addrs: `${s.host}:${s.port}`, timeoutMs: 10_000 });
  await c.ping();
  return { get: (k) => c.get(k), set: (k, v) => c.set(k, v), close: () => c.close() };
}

async function makeIoredis(s: Server): Promise<Ops> {
  // Same wire protocol as ours (RESP2) and no ready check, so both do the same work per call.
  const c = new Redis({ host: s.host, port: s.port, protocol: 2, enableReadyCheck: false, lazyConnect: true } as never);
  await c.connect();
  await c.ping();
  return { get: (k) => c.get(k), set: (k, v) => c.set(k, v), close: () => c.quit() };
}

/** 50 callers, each alternating SET and GET on its own keys, for `seconds`; returns ops/s. */
async function measure(ops: Ops): Promise<number> {
  const value = "x".repeat(valueBytes);
  let count = 0;
  let stop = false;
  const worker = async (id: number) => {
    let i = 0;
    while (!stop) {
      const key = `bench:${id}:${i++ & 1023}`;
      await ops.set(key, value);
      await ops.get(key);
      count += 2;
    }
  };
  // Warm-up, then the measured window.
  const warm = Array.from({ length: callers }, (_, i) => worker(i));
  await Bun.sleep(300);
  stop = true;
  await Promise.all(warm);
  stop = false;
  count = 0;
  const started = performance.now();
  const runs = Array.from({ length: callers }, (_, i) => worker(i));
  await Bun.sleep(seconds * 1000);
  stop = true;
  await Promise.all(runs);
  return count / ((performance.now() - started) / 1000);
}

function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)]!;
}

const server = await startServer();
process.on("SIGINT", () => void server.stop().then(() => process.exit(130)));
console.log(
  `bench-client: ${callers} callers x GET/SET over one client, ${seconds}s per run, ${rounds} rounds, ${valueBytes}-byte values, server ${serverKind} at ${server.host}:${server.port}, bun ${Bun.version}`,
);
const ours: number[] = [];
const theirs: number[] = [];
try {
  for (let r = 0; r < rounds; r++) {
    // Interleave and alternate who goes first, so drift in the server or machine hits both.
    const order: ["kv" | "ioredis", (s: Server) => Promise<Ops>][] = [
      ["kv", makeKv],
      ["ioredis", makeIoredis],
    ];
    if (r % 2 === 1) order.reverse();
    for (const [name, make] of order) {
      const ops = await make(server);
      const rate = await measure(ops);
      await ops.close();
      (name === "kv" ? ours : theirs).push(rate);
      console.log(`  round ${r + 1} ${name.padEnd(8)} ${Math.round(rate).toLocaleString("en-US")} ops/s`);
    }
  }
} finally {
  await server.stop();
}
const a = median(ours);
const b = median(theirs);
console.log(`kv client : ${Math.round(a).toLocaleString("en-US")} ops/s (median of ${rounds})`);
console.log(`ioredis 6 : ${Math.round(b).toLocaleString("en-US")} ops/s (median of ${rounds})`);
console.log(`ratio     : ${(a / b).toFixed(2)}x ioredis`);
