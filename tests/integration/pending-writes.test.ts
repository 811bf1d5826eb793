// The compiled binary behind a slow disk (KV_TEST_FSYNC_DELAY_MS): many clients pipelining writes
// without waiting; the bytes accepted and not yet durable, as INFO reports them, stay under
// --pending-writes-limit plus one write, and every write is acknowledged.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rawConnect, startKv, type KvProcess, type RawClient } from "../helpers/server.ts";
import { encodeCommand } from "../../src/resp/request-parser.ts";
import { recordBytesFor } from "../../src/storage/index.ts";

const LIMIT = 512 * 1024;

describe("--pending-writes-limit with a slow disk", () => {
  let kv: KvProcess;
  beforeAll(async () => {
    kv = await startKv(["--pending-writes-limit", "512kb"], { env: { KV_TEST_FSYNC_DELAY_MS: "40" } });
  });
  afterAll(async () => {
    await kv?.stop();
  });

  test("20 clients x 250 SETs of 1 KiB, sent at once: held bytes stay under the limit plus one write; all acknowledged", async () => {
    const clients = 20;
    const writes = 250;
    const value = "x".repeat(1024);
    const oneWrite = recordBytesFor(encodeCommand(["SET", `key:${clients - 1}:${writes - 1}`, value]).length);
    const monitor = await rawConnect(kv.port);
    let peak = 0;
    let samples = 0;
    let polling = true;
    const poll = (async () => {
      for (let i = 0; i < 5_000 && polling; i++) {
        monitor.clear();
        monitor.write("INFO persistence\r\n");
        const info = await monitor.waitFor((r) => r.includes("kv_pending_writes_pauses:") && r.endsWith("\r\n\r\n"), 5_000);
        peak = Math.max(peak, Number(/kv_pending_writes_bytes:(\d+)/.exec(info)![1]));
        samples++;
        await Bun.sleep(2);
      }
    })();
    const conns: RawClient[] = [];
    for (let c = 0; c < clients; c++) {
      const rc = await rawConnect(kv.port);
      let wire = "";
      for (let i = 0; i < writes; i++) wire += encodeCommand(["SET", `key:${c}:${i}`, value]).toString("latin1");
      rc.write(wire);
      conns.push(rc);
    }
    for (const rc of conns) expect(await rc.waitFor((r) => r.length >= writes * 5, 30_000)).toBe("+OK\r\n".repeat(writes));
    polling = false;
    await poll;
    expect(samples).toBeGreaterThan(0);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(LIMIT + oneWrite);
    monitor.clear();
    monitor.write("DBSIZE\r\nINFO persistence\r\n");
    const after = await monitor.waitFor((r) => r.includes("kv_pending_writes_pauses:") && r.endsWith("\r\n\r\n"), 5_000);
    expect(after.startsWith(`:${clients * writes}\r\n`)).toBe(true);
    expect(after).toContain("kv_pending_writes_bytes:0\r\n");
    expect(after).toContain(`kv_pending_writes_limit:${LIMIT}\r\n`);
    // 5 MB through a 512 KiB budget with 40 ms fsyncs: readers were paused many times.
    expect(Number(/kv_pending_writes_pauses:(\d+)/.exec(after)![1])).toBeGreaterThan(clients);
    for (const rc of [...conns, monitor]) rc.close();
  }, 60_000);
});

test("--pending-writes-limit 0 is refused at startup (there is no unlimited setting)", async () => {
  let err = "";
  try {
    await startKv(["--pending-writes-limit", "0"], { timeoutMs: 5_000 });
  } catch (e) {
    err = (e as Error).message;
  }
  expect(err).toContain("--pending-writes-limit: 0 is out of range");
});
