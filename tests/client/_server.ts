// Starts the compiled ./kv on a chosen (or free) port, so a test can stop and restart it on the same address.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

export const ROOT = join(import.meta.dir, "..", "..");
export const KV_BIN = join(ROOT, "kv");

export interface Kv {
  port: number;
  addr: string;
  dataDir: string;
  proc: Subprocess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Runs `./kv serve --port <port|0>` and waits for "listening on" (10 s at most). */
export async function spawnKv(opts: { port?: number; dataDir?: string } = {}): Promise<Kv> {
  if (!existsSync(KV_BIN)) throw new Error(`${KV_BIN} is missing: run 'bun run build' first`);
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "kv-client-test-"));
  const proc = Bun.spawn([KV_BIN, "serve", "--host", "127.0.0.1", "--port", String(opts.port ?? 0), "--data-dir", dataDir, "--log-level", "info"], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    for await (const chunk of stream) text += dec.decode(chunk, { stream: true });
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  const deadline = performance.now() + 10_000;
  let port = 0;
  while (performance.now() < deadline) {
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
    throw new Error(`kv did not start: ${text}`);
  }
  return {
    port,
    addr: `127.0.0.1:${port}`,
    dataDir,
    proc,
    async stop(signal: NodeJS.Signals = "SIGKILL") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await proc.exited;
    },
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
