// Benchmark: a follower catching up from the leader's snapshot (InstallSnapshot streamed in chunks).
// A 3-node cluster of ./kv processes; one node is killed, --keys keys (16-byte keys, --value-bytes
// values) are loaded through the leader (the log compacts behind them), then the node is restarted.
// Prints the time from its restart to applying the leader's commit index, the snapshot's size, the
// leader's SET latency (one client, one write at a time) before, during and after the transfer, and
// the leader's and follower's RSS (peak, from /proc) — one run, no loop.
//   bun run build && bun scripts/bench-snapshot.ts [--keys 1000000] [--value-bytes 100] [--snapshot-log-bytes 64mb] [--bin ./kv]
import type { Subprocess } from "bun";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RawResp } from "../tests/helpers/resp-raw.ts";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : dflt;
};
const KEYS = Number(opt("--keys", "1000000"));
const VALUE_BYTES = Number(opt("--value-bytes", "100"));
const SNAP_LOG = opt("--snapshot-log-bytes", "64mb");
/** The kv binary to run (--bin: another build, to compare). */
const BIN = opt("--bin", join(import.meta.dir, "..", "kv"));
const BASE = 23000 + Math.floor(Math.random() * 2000);

interface Proc {
  id: number;
  port: number;
  dir: string;
  p: Subprocess<"ignore", "pipe", "pipe"> | null;
  out: string;
}
const nodes: Proc[] = [1, 2, 3].map((id) => ({ id, port: BASE + id - 1, dir: mkdtempSync(join(tmpdir(), `kv-bench-snap-${id}-`)), p: null, out: "" }));
const spec = nodes.map((n) => `${n.id}=127.0.0.1:${n.port}`).join(",");

async function start(n: Proc): Promise<void> {
  n.out = "";
  const p = Bun.spawn([BIN, "serve", "--id", String(n.id), "--port", String(n.port), "--host", "127.0.0.1", "--data-dir", n.dir, "--cluster", spec, "--snapshot-log-bytes", SNAP_LOG], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  n.p = p;
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const d = new TextDecoder();
    for await (const c of s) n.out += d.decode(c, { stream: true });
  };
  void pump(p.stdout);
  void pump(p.stderr);
  const deadline = Date.now() + 30_000;
  while (!/listening on/.test(n.out)) {
    if (Date.now() > deadline || p.exitCode !== null) throw new Error(`node ${n.id} did not start: ${n.out}`);
    await Bun.sleep(20);
  }
}

async function call(port: number, cmds: string[][]): Promise<string[]> {
  const c = await RawResp.connect(port);
  try {
    return await c.call(cmds, 60_000);
  } finally {
    c.close();
  }
}

async function until<T>(f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error("timed out");
    await Bun.sleep(50);
  }
}

const field = (text: string, name: string) => Number(new RegExp(`^${name}:(\\d+)`, "m").exec(text)?.[1] ?? NaN);
const memKb = (pid: number, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN);
const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;

async function main(): Promise<void> {
  await Promise.all(nodes.map(start));
  const lead = await until(async () => {
    for (const n of nodes) {
      const r = (await call(n.port, [["INFO", "raft"]]))[0]!;
      if (/raft_role:leader/.test(r)) return n;
    }
    return undefined;
  }, 20_000);
  const behind = nodes.find((n) => n !== lead)!;
  behind.p!.kill("SIGKILL");
  await behind.p!.exited;
  behind.p = null;

  const tLoad = performance.now();
  const value = "v".repeat(VALUE_BYTES);
  const c = await RawResp.connect(lead.port);
  for (let i = 0; i < KEYS; i += 2000) {
    const batch: string[][] = [];
    for (let j = i; j < Math.min(KEYS, i + 2000); j++) batch.push(["SET", `k${String(j).padStart(15, "0")}`, value]);
    const r = await c.call(batch, 120_000);
    if (r.some((x) => x !== "+OK\r\n")) throw new Error(`load failed: ${r.find((x) => x !== "+OK\r\n")}`);
  }
  c.close();
  console.log(`loaded ${KEYS} keys in ${((performance.now() - tLoad) / 1000).toFixed(1)} s; leader RSS ${mb(memKb(lead.p!.pid, "VmRSS"))}`);
  // Let the leader's own snapshot of the load finish, so the baseline below is not measured during it.
  await until(async () => (/rdb_bgsave_in_progress:1/.test((await call(lead.port, [["INFO", "persistence"]]))[0]!) ? undefined : true), 120_000);
  await Bun.sleep(2000);

  // before: the node is down; transfer: from its restart until the leader has the follower's ack of
  // the snapshot; log: the follower restores it and catches up the entries after it; after: in step.
  type Phase = "before" | "transfer" | "log" | "after";
  const lat: Record<Phase, number[]> = { before: [], transfer: [], log: [], after: [] };
  const leaderRss: Record<Phase, number> = { before: 0, transfer: 0, log: 0, after: 0 };
  let phase: Phase = "before";
  let leaderLogFrom = Infinity;
  let stop = false;
  let errors = 0;
  const writer = (async () => {
    const w = await RawResp.connect(lead.port);
    for (let i = 0; !stop && i < 10_000_000; i++) {
      const t0 = performance.now();
      const r = (await w.call([["SET", `w${i % 1000}`, String(i)]], 30_000))[0];
      if (r !== "+OK\r\n") errors++;
      else lat[phase].push(performance.now() - t0);
    }
    w.close();
  })();
  const sampler = setInterval(() => {
    // (A build that sends a snapshot as one message logs no ack: the follower's install ends the phase.)
    if (phase === "transfer" && (/peer \d+ installed the snapshot/.test(lead.out.slice(leaderLogFrom)) || /installed the leader's snapshot/.test(behind.out))) phase = "log";
    leaderRss[phase] = Math.max(leaderRss[phase], memKb(lead.p!.pid, "VmRSS"));
  }, 20);
  await Bun.sleep(3000);

  const t0 = performance.now();
  leaderLogFrom = lead.out.length;
  phase = "transfer";
  await start(behind);
  const target = field((await call(lead.port, [["INFO", "raft"]]))[0]!, "raft_commit_index");
  let followerPeakKb = 0;
  await until(async () => {
    followerPeakKb = Math.max(followerPeakKb, memKb(behind.p!.pid, "VmRSS"));
    const applied = field((await call(behind.port, [["INFO", "raft"]]))[0]!, "raft_applied_index");
    return applied >= target ? true : undefined;
  }, 600_000);
  const catchUpMs = performance.now() - t0;
  phase = "after";
  await Bun.sleep(3000);
  stop = true;
  await writer;
  clearInterval(sampler);

  const sent = /sending the snapshot at index (\d+) \((\d+) bytes\)/.exec(lead.out);
  const installed = /peer \d+ installed the snapshot at index \d+ \(\d+ bytes in (\d+) ms\)/.exec(lead.out);
  const transfers = (lead.out.match(/sending the snapshot at index/g) ?? []).length;
  const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? NaN;
  const fmt = (xs: number[]) => `${xs.length} writes, p50 ${pct(xs, 0.5).toFixed(2)} ms, p99 ${pct(xs, 0.99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(1)} ms`;
  console.log(`snapshot at index ${sent?.[1]}: ${sent?.[2]} bytes; ${transfers} transfer(s); leader sent it in ${installed?.[1]} ms (until the follower's ack)`);
  console.log(`follower caught up (restart -> applied the leader's commit index ${target}) in ${(catchUpMs / 1000).toFixed(2)} s`);
  console.log(`leader SET latency, one client: before ${fmt(lat.before)}`);
  console.log(`                             transfer ${fmt(lat.transfer)}`);
  console.log(`                       log catch-up ${fmt(lat.log)}`);
  console.log(`                               after  ${fmt(lat.after)}   (errors: ${errors})`);
  console.log(`leader RSS max: before ${mb(leaderRss.before)}, transfer ${mb(leaderRss.transfer)}, log catch-up ${mb(leaderRss.log)}, after ${mb(leaderRss.after)}; peak (VmHWM, whole run incl. load) ${mb(memKb(lead.p!.pid, "VmHWM"))}`);
  console.log(`follower RSS: peak (VmHWM, since restart) ${mb(memKb(behind.p!.pid, "VmHWM"))}, sampled max ${mb(followerPeakKb)}`);
  console.log("follower:\n" + behind.out.split("\n").filter((l) => /snapshot|loaded/.test(l)).join("\n"));
  console.log("leader since the restart:\n" + lead.out.slice(leaderLogFrom).trim());
}

try {
  await main();
} finally {
  for (const n of nodes) {
    n.p?.kill("SIGTERM");
    await n.p?.exited;
    rmSync(n.dir, { recursive: true, force: true });
  }
}
