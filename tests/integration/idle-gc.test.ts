// A quiet server collects the memory of deleted keys (src/server/server.ts, IDLE_GC_CHECK_MS):
// without it, the heap kept every key of a FLUSHALL until the next client traffic.
import { afterEach, expect, test } from "bun:test";
import { rawConnect, startKv, type KvProcess } from "../helpers/server.ts";

let running: KvProcess[] = [];
afterEach(async () => {
  for (const k of running) await k.stop();
  running = [];
});

function field(info: string, name: string): number {
  const m = new RegExp(`\\r\\n${name}:(\\d+)\\r\\n`).exec(info);
  if (m === null) throw new Error(`INFO has no ${name}: ${info.slice(0, 200)}`);
  return Number(m[1]);
}

test("after FLUSHALL a quiet server runs one full collection and its heap shrinks", async () => {
  // No KV.WATCH history: it keeps the latest changes' values (up to --watch-history-bytes) on
  // purpose, so a watcher can resume from before the FLUSHALL; here only garbage is measured.
  const k = await startKv(["--fsync", "no", "--watch-history", "0"]);
  running.push(k);
  const c = await rawConnect(k.port);
  try {
    const info = async (): Promise<string> => {
      c.clear();
      c.write("INFO everything\r\n");
      return c.waitFor((r) => r.includes("kv_idle_collections:") && r.includes("used_memory:") && r.endsWith("\r\n\r\n"));
    };
    // 60k keys with 1,000-byte values (60 MB live, well above an empty heap), pipelined in chunks of 500.
    const value = "v".repeat(1000);
    for (let chunk = 0; chunk < 120; chunk++) {
      c.clear();
      let batch = "";
      for (let i = 0; i < 500; i++) batch += `SET key:${chunk * 500 + i} ${value}\r\n`;
      c.write(batch);
      await c.waitFor((r) => r.split("+OK\r\n").length > 500, 20_000);
    }
    // Let the collector settle after the load (its own timer runs once allocation stops), so
    // what follows the FLUSHALL is quiet: no allocation that would make JavaScriptCore collect.
    await Bun.sleep(3_000);
    const loaded = await info();
    expect(loaded).toContain("db0:keys=60000,");
    expect(field(loaded, "kv_idle_collections")).toBe(0);
    const usedBefore = field(loaded, "used_memory");
    expect(usedBefore).toBeGreaterThan(50 * 1024 * 1024);

    c.clear();
    c.write("FLUSHALL\r\n");
    await c.waitFor((r) => r === "+OK\r\n");
    // Poll slowly (a few commands a second count as quiet) until the collection ran; bounded.
    let after = "";
    for (const deadline = Date.now() + 15_000; Date.now() < deadline; await Bun.sleep(500)) {
      after = await info();
      if (field(after, "kv_idle_collections") >= 1) break;
    }
    expect(field(after, "kv_idle_collections")).toBe(1);
    expect(field(after, "used_memory")).toBeLessThan(usedBefore / 3);
    // One collection per drop: staying quiet with no keys does not collect again.
    await Bun.sleep(3_000);
    expect(field(await info(), "kv_idle_collections")).toBe(1);
  } finally {
    c.close();
  }
}, 40_000);
