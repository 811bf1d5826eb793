// Starts the compiled ./kv on a chosen (or free) port, so a test can stop and restart it on the same address.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { startKv } from "../helpers/server.ts";

export { KV_BIN, ROOT } from "../helpers/server.ts";

export interface Kv {
  port: number;
  addr: string;
  dataDir: string;
  proc: Subprocess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Runs `./kv serve --port <port|0>` and waits for "listening on" (10 s at most). The data dir is the caller's to remove. */
export async function spawnKv(opts: { port?: number; dataDir?: string } = {}): Promise<Kv> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "kv-client-test-"));
  const kv = await startKv([], { dataDir, port: opts.port });
  return {
    port: kv.port,
    addr: `127.0.0.1:${kv.port}`,
    dataDir,
    proc: kv.proc,
    async stop(signal: NodeJS.Signals = "SIGKILL") {
      await kv.stop({ signal, keepData: true });
    },
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
