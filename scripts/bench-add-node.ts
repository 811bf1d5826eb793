#!/usr/bin/env bun
// Adding a node to a loaded cluster: `kv cluster up 3`, N keys loaded through the leader (16-byte keys
// `key:%012d`, 100-byte values; default 1,000,000), then `kv cluster add` timed while writers keep
// writing to the leader. Reports the time the add took (start the process, add it as a learner,
// stream the leader's snapshot, install it, catch up, promote), the leader's write latency (p50, p99,
// max) during the add against a baseline period just before it with the same writers and no add,
// and the RSS of the leader and the new node (sampled from /proc every 50 ms; the new node's VmHWM,
// its lifetime peak, too). The machine's load is printed with the figures: compare runs on a quiet
// machine only.
//
//   bun run build && bun scripts/bench-add-node.ts [--keys 1000000] [--adds 1] [--baseline-s 8]
//                                                [--writers 8] [--kv-args "..."] [--keep]
//
// --adds N: N adds in a row (3 -> 4 -> ...), each with its own baseline just before it.
// --kv-args: more `kv serve` flags for every node (passed through `kv cluster up`).
// Everything is bounded: the load (10 min), each add (`kv cluster add --timeout`, 10 min), the run.
import { parseArgs } from "node:util";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { readClusterFile } from "../src/cli/cluster-layout.ts";
import { portProblem } from "../src/cli/cluster-proc.ts";
import { type Client, createClient } from "../src/client/index.ts";
import { bulkLoad, fmtMB, fmtNum, installCleanupHandlers, machineBusy, machineDescription, makeTempDir, onCleanup, printTable, procRssBytes, sleep, splitCommandLine } from "./bench-lib.ts";

const { values: opts } = parseArgs({
  options: {
    keys: { type: "string", default: "1000000" },
    adds: { type: "string", default: "1" },
    "baseline-s": { type: "string", default: "8" },
    writers: { type: "string", default: "8" },
    "kv-args": { type: "string", default: "" },
    keep: { type: "boolean", default: false },
  },
});
const KEYS = Number(opts.keys);
const ADDS = Number(opts.adds);
const BASELINE_MS = Number(opts["baseline-s"]) * 1000;
const WRITERS = Number(opts.writers);
const VALUE_BYTES = 100;
const ADD_TIMEOUT_S = 600;
for (const [name, v, max] of [["--keys", KEYS, 50_000_000], ["--adds", ADDS, 10], ["--baseline-s", BASELINE_MS / 1000, 600], ["--writers", WRITERS, 256]] as const) {
  if (!Number.isInteger(v) || v < 1 || v > max) {
    console.error(`${name}: an integer from 1 to ${max}`);
    process.exit(2);
  }
}
const KV = join(import.meta.dir, "..", "kv");
if (!existsSync(KV)) {
  console.error(`${KV} is missing: run 'bun run build' first`);
  process.exit(2);
}

installCleanupHandlers();
const root = opts.keep ? (await import("node:fs")).mkdtempSync("/tmp/kv-bench-add-") : makeTempDir("kv-bench-add-");
const dir = join(root, "cluster");

function kv(args: string[], timeoutMs: number): { proc: ReturnType<typeof Bun.spawn>; done: Promise<{ code: number; out: string }> } {
  const proc = Bun.spawn([KV, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const killer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const done = (async () => {
    const [o, e, code] = await Promise.all([new Response(proc.stdout as ReadableStream).text(), new Response(proc.stderr as ReadableStream).text(), proc.exited]);
    clearTimeout(killer);
    return { code, out: o + e };
  })();
  return { proc, done };
}

/** A base port whose client ports and peer ports (+10000) are free for 3 + ADDS nodes, below the ephemeral range. */
function basePort(): number {
  const count = 3 + ADDS;
  for (let tries = 0; tries < 200; tries++) {
    const base = 12_000 + Math.floor(Math.random() * (32_768 - 10_000 - 12_000 - count));
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = portProblem(base + i) === null && portProblem(base + i + 10_000) === null;
    if (ok) return base;
  }
  throw new Error("no free port range found in 200 tries");
}

function loadavg(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}

function vmHwm(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

async function info(addr: string): Promise<Record<string, string>> {
  const c = createClient({ addrs: addr, timeoutMs: 5000, readRetriesMax: 0 });
  try {
    const text = String(await c.command(["INFO", "raft"]));
    return Object.fromEntries(text.split("\r\n").filter((l) => l.includes(":") && !l.startsWith("#")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]));
  } finally {
    c.destroy();
  }
}

/** The leader as cluster.json's members say (bounded). */
async function leader(): Promise<{ id: number; addr: string; pid: number }> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const file = readClusterFile(dir)!;
    for (const n of file.nodes) {
      try {
        const i = await info(n.addr);
        if (i.raft_role === "leader") return { id: n.id, addr: n.addr, pid: n.pid };
      } catch {}
    }
    if (Date.now() > deadline) throw new Error("no leader within 30 s");
    await sleep(100);
  }
}

interface Writers {
  readonly lat: number[];
  errors: number;
  stop(): Promise<void>;
}

/** WRITERS clients on the leader, each one SET at a time on random keys of the keyspace; bounded by maxMs. */
function writers(addr: string, maxMs: number): Writers {
  const lat: number[] = [];
  const w = { lat, errors: 0 } as Writers & { errors: number };
  let stop = false;
  const value = "w".repeat(VALUE_BYTES);
  const clients: Client[] = [];
  const t0 = performance.now();
  const runs = Array.from({ length: WRITERS }, async () => {
    const c = createClient({ addrs: addr, timeoutMs: 10_000 });
    clients.push(c);
    for (let i = 0; i < 100_000_000 && !stop && performance.now() - t0 < maxMs; i++) {
      const k = `key:${String(Math.floor(Math.random() * KEYS)).padStart(12, "0")}`;
      const s = performance.now();
      try {
        await c.command(["SET", k, value]);
        lat.push(performance.now() - s);
      } catch {
        w.errors++;
      }
    }
  });
  w.stop = async () => {
    stop = true;
    await Promise.all(runs);
    for (const c of clients) c.destroy();
  };
  return w;
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const base = basePort();
console.log(`machine: ${machineDescription()}; load average ${loadavg()}; busy ${(100 * (await machineBusy(500))).toFixed(0)}% over 0.5 s before the run`);
console.log(`kv cluster up 3 in ${dir} (ports ${base}..), ${KEYS} keys of 16 bytes with ${VALUE_BYTES}-byte values, ${WRITERS} writers on the leader`);
const up = await kv(["cluster", "up", "3", "--base-port", String(base), "--data-dir", dir, "--detach", ...splitCommandLine(opts["kv-args"] ?? "")], 60_000).done;
onCleanup(() => {
  if (!opts.keep) Bun.spawnSync([KV, "cluster", "down", "--data-dir", dir, "--timeout", "5"], { stdout: "ignore", stderr: "ignore" });
});
if (up.code !== 0) throw new Error(`kv cluster up failed: ${up.out}`);
let lead = await leader();
const load = await bulkLoad(Number(lead.addr.split(":")[1]), KEYS, VALUE_BYTES, { timeoutMs: 600_000 });
console.log(`loaded ${KEYS} keys through leader n${lead.id} in ${(load.ms / 1000).toFixed(1)} s; leader RSS ${fmtMB(procRssBytes(lead.pid))}`);

const rows: string[][] = [];
const rssRows: string[][] = [];
for (let a = 1; a <= ADDS; a++) {
  await sleep(2000);
  lead = await leader();
  // Baseline: the same writers, no add.
  const loadBefore = loadavg();
  const b = writers(lead.addr, BASELINE_MS);
  await sleep(BASELINE_MS);
  await b.stop();
  const bSecs = BASELINE_MS / 1000;
  rows.push([`${a}: baseline`, fmtNum(bSecs, 1), String(b.lat.length), String(Math.round(b.lat.length / bSecs)), fmtNum(pct(b.lat, 50)), fmtNum(pct(b.lat, 99)), fmtNum(Math.max(...b.lat)), String(b.errors), loadBefore]);

  // The add, timed, with the writers running through it and RSS sampled.
  const before = new Set(readClusterFile(dir)!.nodes.map((n) => n.id));
  const leaderRss0 = procRssBytes(lead.pid);
  let leaderPeak = leaderRss0;
  let learnerPeak = NaN;
  let learnerPid = 0;
  const w = writers(lead.addr, ADD_TIMEOUT_S * 1000);
  const t0 = performance.now();
  const add = kv(["cluster", "add", "--data-dir", dir, "--timeout", String(ADD_TIMEOUT_S)], (ADD_TIMEOUT_S + 30) * 1000);
  let finished = false;
  const sampler = (async () => {
    while (!finished) {
      leaderPeak = Math.max(leaderPeak, procRssBytes(lead.pid) || 0);
      if (learnerPid === 0) {
        try {
          const n = readClusterFile(dir)!.nodes.find((x) => !before.has(x.id));
          if (n && n.pid > 0) learnerPid = n.pid;
        } catch {}
      }
      if (learnerPid > 0) {
        const r = procRssBytes(learnerPid);
        if (Number.isFinite(r)) learnerPeak = Number.isFinite(learnerPeak) ? Math.max(learnerPeak, r) : r;
      }
      await sleep(50);
    }
  })();
  const res = await add.done;
  const addMs = performance.now() - t0;
  finished = true;
  await sampler;
  await w.stop();
  if (res.code !== 0) throw new Error(`kv cluster add failed (exit ${res.code}): ${res.out}`);
  const added = readClusterFile(dir)!.nodes.find((x) => !before.has(x.id))!;
  const loadAfter = loadavg();
  const secs = addMs / 1000;
  rows.push([`${a}: during kv cluster add (n${added.id})`, fmtNum(secs, 1), String(w.lat.length), String(Math.round(w.lat.length / secs)), fmtNum(pct(w.lat, 50)), fmtNum(pct(w.lat, 99)), fmtNum(Math.max(...w.lat)), String(w.errors), loadAfter]);
  rssRows.push([`${a}: n${added.id} added in ${fmtNum(secs, 1)} s`, `n${lead.id}: ${fmtMB(leaderRss0)} -> peak ${fmtMB(leaderPeak)}`, `n${added.id}: peak ${fmtMB(learnerPeak)} (VmHWM ${fmtMB(vmHwm(added.pid))})`]);
  console.log(res.out.trim().split("\n").map((l) => `  ${l}`).join("\n"));
}

console.log();
printTable(["phase", "seconds", "writes", "writes/s", "p50 ms", "p99 ms", "max ms", "errors", "load avg (1/5/15 min)"], rows);
console.log();
printTable(["add", "leader RSS", "new node RSS"], rssRows);
console.log(`\nmachine: ${machineDescription()}; load average ${loadavg()} at the end. Shared or busy machine: compare medians of several runs on a quiet one.`);
if (opts.keep) console.log(`kept: ${dir} (stop it with ./kv cluster down --data-dir ${dir})`);
process.exit(0);
