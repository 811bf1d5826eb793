// The global budget of bytes accepted but not yet durable (--pending-writes-limit), in process,
// over a storage layer whose fsyncs are held: the bytes held stay under the limit plus one write,
// writers stop being read while reads are still answered, and every write is acknowledged once
// the disk catches up.
import { describe, expect, test } from "bun:test";
import { DEFAULT_CONFIG, type ServerConfig } from "../../src/config.ts";
import { encodeCommandEntry } from "../../src/node/kv-payload.ts";
import { encodeCommand } from "../../src/resp/request-parser.ts";
import { type Conn, KvServer } from "../../src/server/server.ts";
import { RecordingIo, recordBytesFor } from "../../src/storage/index.ts";
import { openOneMember } from "../helpers/one-member.ts";
import { rawConnect, type RawClient } from "../helpers/server.ts";
import { tempDirs } from "../helpers/tmp.ts";

const tempDir = tempDirs("kv-pending-");

async function startInProcess(io: RecordingIo, overrides: Partial<ServerConfig>) {
  const dir = tempDir();
  const { node: durable } = await openOneMember<Conn>({ dataDir: dir, segmentBytesMax: 64 << 20, io });
  const server = new KvServer({ ...DEFAULT_CONFIG, host: "127.0.0.1", port: 0, dataDir: dir, shutdownTimeoutMs: 2_000, ...overrides }, durable);
  server.start();
  return { server, durable };
}

/** Waits until cond() holds, bounded by count and time. */
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 10_000 && !cond() && Date.now() < deadline; i++) await Bun.sleep(5);
  return cond();
}

describe("--pending-writes-limit", () => {
  test("held fsyncs: bytes not yet durable stay under the limit plus one write; reads go on; every write is acknowledged after", async () => {
    const io = new RecordingIo();
    const limit = 256 * 1024;
    const { server, durable } = await startInProcess(io, { pendingWritesLimit: limit });
    // The node serves (its election and log are on disk); from now on every fsync is held.
    let diskHeld = true;
    io.beforeDatasync = async () => {
      for (let i = 0; i < 2_000 && diskHeld; i++) await Bun.sleep(5);
    };
    // The most ever held, read right after each write is accepted (where it peaks).
    let peak = 0;
    const propose = durable.propose.bind(durable);
    durable.propose = (...args) => {
      const p = propose(...args);
      peak = Math.max(peak, durable.pendingBytes);
      return p;
    };
    const clients = 8;
    const writes = 300; // per client: 8 x 300 x 1 KiB = 2.4 MB, ten times the limit
    const value = "v".repeat(1024);
    const oneWrite = recordBytesFor(encodeCommandEntry(["SET", `k${clients - 1}-${writes - 1}`, value], Date.now()).length);
    const conns: RawClient[] = [];
    for (let c = 0; c < clients; c++) {
      const rc = await rawConnect(server.port);
      let wire = "";
      for (let i = 0; i < writes; i++) wire += encodeCommand(["SET", `k${c}-${i}`, value]).toString("latin1");
      rc.write(wire);
      conns.push(rc);
    }
    // Every writer ends up paused behind the limit while the disk holds (or, without a limit, every write is accepted).
    await until(() => server.pendingWritesWaiters.size === clients || durable.pendingBytes >= clients * writes * 1024, 5_000);
    expect(peak).toBeLessThan(limit + oneWrite);
    expect(server.pendingWritesWaiters.size).toBe(clients);
    expect(durable.pendingBytes).toBeGreaterThanOrEqual(limit);
    // A client whose next command is a read is still served, INFO included.
    const reader = await rawConnect(server.port);
    reader.write("PING\r\nINFO persistence\r\n");
    const info = await reader.waitFor((r) => r.includes("kv_pending_writes_pauses"), 5_000);
    expect(info.startsWith("+PONG\r\n")).toBe(true);
    expect(info).toContain(`kv_pending_writes_limit:${limit}\r\n`);
    expect(info).toContain(`kv_pending_writes_paused_clients:${clients}\r\n`);
    expect(Number(/kv_pending_writes_bytes:(\d+)/.exec(info)![1])).toBeGreaterThanOrEqual(limit);
    // The disk catches up: every write is acknowledged, in order, none dropped or failed.
    diskHeld = false;
    for (const rc of conns) expect(await rc.waitFor((r) => r.length >= writes * 5, 20_000)).toBe("+OK\r\n".repeat(writes));
    expect(peak).toBeGreaterThanOrEqual(limit);
    expect(peak).toBeLessThan(limit + oneWrite);
    expect(server.db.dbsize()).toBe(clients * writes);
    expect(server.stats.pendingWritesPauses).toBeGreaterThanOrEqual(clients);
    expect(server.pendingWritesWaiters.size).toBe(0);
    expect(durable.pendingBytes).toBe(0);
    for (const rc of [...conns, reader]) rc.close();
    expect(await server.shutdown()).toBe(true);
  }, 60_000);

  test("one write larger than the whole limit is still accepted (the limit plus one write)", async () => {
    const io = new RecordingIo();
    io.syncDelayMs = 20;
    const { server, durable } = await startInProcess(io, { pendingWritesLimit: 1024 });
    const rc = await rawConnect(server.port);
    const big = "b".repeat(64 * 1024);
    rc.write(encodeCommand(["SET", "big1", big]).toString("latin1") + encodeCommand(["SET", "big2", big]).toString("latin1") + "STRLEN big2\r\n");
    expect(await rc.waitFor((r) => r.length >= 18, 10_000)).toBe(`+OK\r\n+OK\r\n:${64 * 1024}\r\n`);
    expect(server.stats.pendingWritesPauses).toBe(1);
    expect(durable.pendingBytes).toBe(0);
    rc.close();
    expect(await server.shutdown()).toBe(true);
  }, 30_000);
});
