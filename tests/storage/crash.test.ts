// kill -9 during concurrent appends, snapshots and compaction: after recovery every acknowledged
// record is there. 20 rounds on the same data dir, so each round also recovers the previous crash.
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { openStorage } from "../../src/storage/index.ts";
import { setLogLevel } from "../../src/log.ts";
import { cleanupTempDirs, tempDir } from "./helpers.ts";

afterEach(cleanupTempDirs);

const child = join(import.meta.dir, "fixtures", "crash-child.ts");

async function readUntilKilled(proc: Bun.Subprocess<"ignore", "pipe", "pipe">, killAfterMs: number): Promise<string> {
  const reader = proc.stdout.getReader();
  let out = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += dec.decode(value);
    if (!timer && out.includes("READY")) timer = setTimeout(() => proc.kill("SIGKILL"), killAfterMs);
  }
  await proc.exited;
  return out;
}

test("kill -9 at random moments: every acknowledged append survives, state = snapshot + log", async () => {
  setLogLevel("error");
  const dir = tempDir();
  let seed = 4711;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const ackedPerKey = new Map<string, number>();
  let maxAcked = 0;
  let totalAcked = 0;
  let sawSnapshot = false;
  let sawCompaction = false;
  for (let round = 0; round < 20; round++) {
    const proc = Bun.spawn([process.execPath, child, dir], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const out = await readUntilKilled(proc, 50 + Math.floor(rand() * 400));
    expect(proc.signalCode).toBe("SIGKILL");
    const lines = out.split("\n");
    const ready = lines.find((l) => l.startsWith("READY"));
    expect(ready).toBeDefined();
    // The child recovered at least everything acknowledged in earlier rounds.
    expect(Number(ready!.split(" ")[1])).toBeGreaterThanOrEqual(maxAcked);
    for (const l of lines) {
      const m = /^A (\d+) (k\d+)$/.exec(l);
      if (!m) continue;
      const idx = Number(m[1]);
      ackedPerKey.set(m[2]!, Math.max(ackedPerKey.get(m[2]!) ?? 0, idx));
      maxAcked = Math.max(maxAcked, idx);
      totalAcked++;
    }
    // Recover here, exactly as a server would, and compare.
    const s = await openStorage({ dataDir: dir, segmentBytesMax: 16 * 1024 });
    expect(s.wal.lastIndex()).toBeGreaterThanOrEqual(maxAcked);
    const state = new Map<string, number>();
    s.snapshot?.forEach((k, v) => state.set(k, Number(v)));
    const dec = new TextDecoder();
    let expectIndex = s.replayFrom;
    for (const r of s.wal.replay(s.replayFrom)) {
      expect(r.index).toBe(expectIndex++);
      const [k, v] = dec.decode(r.payload).split(" ");
      expect(Number(v)).toBe(r.index);
      state.set(k!, r.index);
    }
    for (const [k, idx] of ackedPerKey) expect([k, (state.get(k) ?? 0) >= idx]).toEqual([k, true]);
    sawSnapshot ||= s.snapshot !== undefined;
    sawCompaction ||= s.wal.firstIndex() > 1;
    await s.close();
  }
  expect(totalAcked).toBeGreaterThan(200);
  expect([sawSnapshot, sawCompaction]).toEqual([true, true]);
  console.log(`crash test: ${totalAcked} acknowledged appends over 20 kills, last index ${maxAcked}`);
}, 120_000);
