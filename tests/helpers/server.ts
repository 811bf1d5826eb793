// Starts the compiled ./kv binary on a free loopback port with a temp data dir, for integration tests.
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { afterAll } from "bun:test";

export const ROOT = join(import.meta.dir, "..", "..");
export const KV_BIN = join(ROOT, "kv");

/**
 * Servers started here and not stopped yet. A test whose assertion fails before its stop() would
 * otherwise leave its server running after the test run: they are killed after the test file.
 */
const live = new Map<Subprocess, string | null>();
afterAll(async () => {
  for (const [p, dir] of live) {
    p.kill("SIGKILL");
    await p.exited;
    if (dir !== null) rmSync(dir, { recursive: true, force: true });
  }
  live.clear();
});

export interface KvProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  host: string;
  dataDir: string;
  /** Everything the process wrote so far (stdout and stderr interleaved). */
  output(): string;
  /** SIGTERM, wait for exit; returns the exit code. Removes the data dir unless keepData. */
  stop(opts?: { signal?: NodeJS.Signals; keepData?: boolean }): Promise<number>;
}

/** Starts `./kv serve --port <port|0>` and waits for its "listening on" line (bounded by timeoutMs). */
export async function startKv(extraArgs: string[] = [], opts: { dataDir?: string; port?: number; timeoutMs?: number; env?: Record<string, string | undefined> } = {}): Promise<KvProcess> {
  if (!existsSync(KV_BIN)) throw new Error(`${KV_BIN} is missing: run 'bun run build' first`);
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "kv-test-"));
  const proc = Bun.spawn([KV_BIN, "serve", "--port", String(opts.port ?? 0), "--host", "127.0.0.1", "--data-dir", dataDir, ...extraArgs], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1", ...opts.env },
  });
  live.set(proc, opts.dataDir ? null : dataDir);
  void proc.exited.then(() => live.delete(proc));
  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    for await (const chunk of stream) text += dec.decode(chunk, { stream: true });
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let port = 0;
  while (Date.now() < deadline) {
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(text);
    if (m) {
      port = Number(m[1]);
      break;
    }
    if (proc.exitCode !== null) break;
    await Bun.sleep(10);
  }
  if (port === 0) {
    proc.kill("SIGKILL");
    await proc.exited;
    if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`kv did not start (exit ${proc.exitCode}): ${text}`);
  }
  return {
    proc,
    port,
    host: "127.0.0.1",
    dataDir,
    output: () => text,
    async stop({ signal = "SIGTERM", keepData = false } = {}) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const killer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      const code = await proc.exited;
      clearTimeout(killer);
      if (!keepData && !opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
  };
}

/** A raw TCP client that collects every byte the server sends, for exact-bytes assertions. */
export async function rawConnect(port: number): Promise<RawClient> {
  const state: { buf: Buffer; closed: boolean; waiters: (() => void)[] } = { buf: Buffer.alloc(0), closed: false, waiters: [] };
  const wake = () => {
    const w = state.waiters;
    state.waiters = [];
    for (const f of w) f();
  };
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, chunk) {
        state.buf = Buffer.concat([state.buf, chunk]);
        wake();
      },
      close() {
        state.closed = true;
        wake();
      },
      error() {
        state.closed = true;
        wake();
      },
    },
  });
  const client: RawClient = {
    write(data) {
      const b = typeof data === "string" ? Buffer.from(data, "latin1") : data;
      let off = 0;
      // Bounded: loopback takes small test payloads at once; larger ones drain quickly.
      const tryWrite = () => {
        const n = socket.write(b.subarray(off));
        if (n > 0) off += n;
      };
      tryWrite();
      if (off < b.length) throw new Error(`short write in test client (${off}/${b.length})`);
    },
    received: () => state.buf.toString("latin1"),
    isClosed: () => state.closed,
    async waitFor(pred, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pred(state.buf.toString("latin1"), state.closed)) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting; received so far: ${JSON.stringify(state.buf.toString("latin1").slice(0, 500))} closed=${state.closed}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(left, 50));
          state.waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      return state.buf.toString("latin1");
    },
    clear() {
      state.buf = Buffer.alloc(0);
    },
    close() {
      socket.end();
    },
    socket,
  };
  return client;
}

export interface RawClient {
  write(data: string | Uint8Array): void;
  received(): string;
  isClosed(): boolean;
  /** Waits until pred(received, closed) holds, bounded by timeoutMs. */
  waitFor(pred: (received: string, closed: boolean) => boolean, timeoutMs?: number): Promise<string>;
  clear(): void;
  close(): void;
  socket: import("bun").Socket<undefined>;
}
