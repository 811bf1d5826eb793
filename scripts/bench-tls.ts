#!/usr/bin/env bun
// The cost of TLS: redis-benchmark --tls (with --cacert, --cert, --key: client certificates
// required on both servers) against kv and Debian's redis-server, each serving a plain and a TLS
// port, in the same run: -c 50 at -P 1 and -P 16, SET and GET. Prints kv/redis over TLS (target
// >= 0.6x at -P 16) and each server's TLS cost per request (TLS against plain). Then a 3-node kv
// cluster with peer mutual TLS against one with plaintext peers, durable SET (--fsync always) at the
// leader's plain port: throughput ratio (target >= 0.85x).
//
//   bun scripts/bench-tls.ts [--rounds 3] [--quick] [--requests N] [--skip-cluster] [--skip-single]
//
// Certificates: a throwaway CA and leaf certificates made with openssl in a temp dir.
// Exits non-zero only when something fails to run; missed targets print "TARGET MISSED".
import { parseArgs } from "node:util";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { makeCa, makeLeaf } from "../src/cli/certs.ts";
import { fmtNum, fmtOps, freePort, installCleanupHandlers, machineDescription, makeTempDir, median, printTable, respCommand, runCleanups, sleep, startServer, type Server } from "./bench-lib.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const KV = `${ROOT}/kv`;

const { values: opt } = parseArgs({
  args: process.argv.slice(2),
  options: {
    rounds: { type: "string" },
    quick: { type: "boolean", default: false },
    requests: { type: "string" },
    "skip-cluster": { type: "boolean", default: false },
    "skip-single": { type: "boolean", default: false },
  },
});
const quick = opt.quick === true;
const ROUNDS = Number(opt.rounds ?? (quick ? 1 : 3));
const REQ_P1 = Number(opt.requests ?? (quick ? 30_000 : 100_000));
const REQ_P16 = Number(opt.requests ?? (quick ? 150_000 : 500_000));
const CLIENTS = 50;
const DATA = 16;
const KEYSPACE = 100_000;

installCleanupHandlers();

type Test = "set" | "get";
interface Tls {
  ca: string;
  cert: string;
  key: string;
}

function which(cmd: string): boolean {
  return Bun.spawnSync(["sh", "-c", `command -v ${cmd}`], { stdout: "pipe" }).exitCode === 0;
}

/** One redis-benchmark run; its requests per second. */
async function bench(port: number, p: number, test: Test, tls: Tls | null, requests: number): Promise<number> {
  const argv = [
    "redis-benchmark", "-h", "127.0.0.1", "-p", String(port), "-c", String(CLIENTS), "-n", String(requests), "-d", String(DATA), "-r", String(KEYSPACE), "-P", String(p), "-t", test, "--csv",
    ...(tls !== null ? ["--tls", "--cacert", tls.ca, "--cert", tls.cert, "--key", tls.key] : []),
  ];
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
  const killer = setTimeout(() => proc.kill("SIGKILL"), 180_000);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(killer);
  const line = out.split(/\r?\n/).find((l) => l.toUpperCase().startsWith(`"${test.toUpperCase()}"`));
  const rps = line === undefined ? NaN : Number(line.split(",")[1]!.replace(/"/g, ""));
  if (code !== 0 || !Number.isFinite(rps)) throw new Error(`redis-benchmark failed (exit ${code}): ${argv.join(" ")}\n${err.slice(-800)}\n${out.slice(-800)}`);
  return rps;
}

function certs(dir: string, ids: number[]): { ca: string; leaf: Map<number, { cert: string; key: string }>; client: Tls; server: { cert: string; key: string } } {
  const ca = makeCa(dir, "ca", "/CN=bench CA");
  const leaf = new Map(ids.map((id) => [id, makeLeaf(dir, `node${id}`, ca, { cn: `kv node ${id}`, nodeId: id })] as const));
  const server = makeLeaf(dir, "server", ca, { cn: "bench server" });
  const c = makeLeaf(dir, "client", ca, { cn: "bench client" });
  return { ca: ca.cert, leaf, server, client: { ca: ca.cert, cert: c.cert, key: c.key } };
}

// ---------------------------------------------------------------- single servers

async function single(tmp: string, c: ReturnType<typeof certs>): Promise<boolean> {
  const tlsFlags = ["--tls-cert-file", c.server.cert, "--tls-key-file", c.server.key, "--tls-ca-cert-file", c.ca, "--tls-auth-clients", "yes"];
  const servers: { name: "kv" | "redis"; plain: number; tls: number; s: Server }[] = [];
  {
    const dir = join(tmp, "kv");
    mkdirSync(dir, { recursive: true });
    const plain = freePort();
    const tls = freePort();
    // No fsync, as redis-server with neither RDB nor AOF: the comparison is of the TLS path, not the disk.
    const argv = [KV, "serve", "--port", String(plain), "--tls-port", String(tls), ...tlsFlags, "--fsync", "no", "--data-dir", dir, "--log-level", "warn"];
    servers.push({ name: "kv", plain, tls, s: await startServer("kv", argv, plain, dir) });
    console.log(`kv: ${argv.join(" ")}`);
  }
  {
    const dir = join(tmp, "redis");
    mkdirSync(dir, { recursive: true });
    const plain = freePort();
    const tls = freePort();
    const argv = ["redis-server", "--port", String(plain), "--tls-port", String(tls), ...tlsFlags, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning"];
    servers.push({ name: "redis", plain, tls, s: await startServer("redis", argv, plain, dir) });
    console.log(`redis: ${argv.join(" ")}`);
  }
  const results = new Map<string, number[]>();
  const key = (srv: string, mode: string, p: number, t: Test) => `${srv} ${mode} -P ${p} ${t}`;
  for (let r = 0; r < ROUNDS; r++) {
    for (const p of [1, 16]) {
      for (const t of ["set", "get"] as const) {
        for (const s of servers) {
          for (const mode of ["plain", "tls"] as const) {
            const ops = await bench(mode === "tls" ? s.tls : s.plain, p, t, mode === "tls" ? c.client : null, p === 1 ? REQ_P1 : REQ_P16);
            const k = key(s.name, mode, p, t);
            results.set(k, [...(results.get(k) ?? []), ops]);
          }
        }
      }
    }
    console.log(`round ${r + 1}/${ROUNDS} done`);
  }
  const med = (k: string) => median(results.get(k)!);
  const rows: string[][] = [];
  for (const p of [1, 16]) {
    for (const t of ["set", "get"] as const) {
      const kvT = med(key("kv", "tls", p, t));
      const kvP = med(key("kv", "plain", p, t));
      const rT = med(key("redis", "tls", p, t));
      const rP = med(key("redis", "plain", p, t));
      const costUs = (tls: number, plain: number) => fmtNum((1e6 / tls - 1e6 / plain), 2);
      rows.push([`-P ${p} ${t.toUpperCase()}`, fmtOps(kvP), fmtOps(kvT), fmtOps(rP), fmtOps(rT), `${fmtNum(kvT / rT)}x`, `${costUs(kvT, kvP)} us (${fmtNum(kvT / kvP)}x)`, `${costUs(rT, rP)} us (${fmtNum(rT / rP)}x)`]);
    }
  }
  console.log(`\nmedians of ${ROUNDS} round(s), redis-benchmark -c ${CLIENTS} -d ${DATA} -r ${KEYSPACE}, -n ${REQ_P1} at -P 1 and ${REQ_P16} at -P 16; TLS runs with --tls --cacert --cert --key`);
  printTable(["load", "kv plain", "kv TLS", "redis plain", "redis TLS", "kv/redis TLS", "kv TLS cost/req (TLS/plain)", "redis TLS cost/req (TLS/plain)"], rows);
  console.log("TLS cost per request: 1/ops(TLS) - 1/ops(plain), wall time per request across 50 clients (not CPU time).");
  let ok = true;
  for (const t of ["set", "get"] as const) {
    const ratio = med(key("kv", "tls", 16, t)) / med(key("redis", "tls", 16, t));
    const hit = ratio >= 0.6;
    ok &&= hit;
    console.log(`kv/redis over TLS, -P 16 ${t.toUpperCase()}: ${fmtNum(ratio)}x (target >= 0.6x) ${hit ? "ok" : "TARGET MISSED"}`);
  }
  for (const s of servers) await s.s.stop();
  return ok;
}

// ---------------------------------------------------------------- clusters

async function leaderPort(nodes: { id: number; plain: number }[], maxMs = 20_000): Promise<number> {
  const deadline = Date.now() + maxMs;
  while (Date.now() < deadline) {
    for (const n of nodes) {
      try {
        const info = await respCommand(n.plain, ["INFO", "raft"], 1000);
        if (/raft_role:leader/.test(info)) return n.plain;
      } catch {
        // not up yet
      }
    }
    await sleep(100);
  }
  throw new Error("no leader within 20 s");
}

/** A 3-node cluster; with `mtls`, peer mutual TLS (and the TLS client port members forward over). Clients use the plain ports. */
async function cluster(tmp: string, c: ReturnType<typeof certs>, mtls: boolean): Promise<{ leader: number; stop: () => Promise<void> }> {
  const ports = [1, 2, 3].map((id) => ({ id, plain: freePort(), tls: freePort(), peer: freePort() }));
  // The members' addresses are their TLS ports with mutual TLS (forwarding goes there), else the plain ones.
  const spec = ports.map((p) => `${p.id}=127.0.0.1:${mtls ? p.tls : p.plain}@${p.peer}`).join(",");
  const servers: Server[] = [];
  for (const p of ports) {
    const dir = join(tmp, `${mtls ? "mtls" : "plain"}-n${p.id}`);
    mkdirSync(dir, { recursive: true });
    const leaf = c.leaf.get(p.id)!;
    const tlsArgs = mtls ? ["--tls-port", String(p.tls), "--tls-cert-file", leaf.cert, "--tls-key-file", leaf.key, "--tls-ca-cert-file", c.ca, "--tls-cluster"] : [];
    const argv = [KV, "serve", "--id", String(p.id), "--port", String(p.plain), ...tlsArgs, "--cluster", spec, "--fsync", "always", "--data-dir", dir, "--log-level", "warn"];
    servers.push(await startServer(`${mtls ? "mtls" : "plain"}-n${p.id}`, argv, p.plain, dir, { ready: async () => ((await respCommand(p.plain, ["PING"], 1000)).length > 0 ? null : "no reply") }));
    if (p.id === 1) console.log(`cluster node (${mtls ? "peer mTLS" : "plaintext peers"}): ${argv.join(" ")}`);
  }
  const leader = await leaderPort(ports);
  return { leader, stop: async () => void (await Promise.all(servers.map((s) => s.stop()))) };
}

async function clusters(tmp: string, c: ReturnType<typeof certs>): Promise<boolean> {
  const res = { plain: [] as number[], mtls: [] as number[] };
  const p16 = { plain: [] as number[], mtls: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of ["plain", "mtls"] as const) {
      const cl = await cluster(join(tmp, `round${r}`), c, mode === "mtls");
      try {
        res[mode].push(await bench(cl.leader, 1, "set", null, Math.round(REQ_P1 / 2)));
        p16[mode].push(await bench(cl.leader, 16, "set", null, Math.round(REQ_P16 / 2)));
      } finally {
        await cl.stop();
      }
    }
    console.log(`cluster round ${r + 1}/${ROUNDS} done`);
  }
  const rows = [
    ["-P 1 SET", fmtOps(median(res.plain)), fmtOps(median(res.mtls)), `${fmtNum(median(res.mtls) / median(res.plain))}x`],
    ["-P 16 SET", fmtOps(median(p16.plain)), fmtOps(median(p16.mtls)), `${fmtNum(median(p16.mtls) / median(p16.plain))}x`],
  ];
  console.log(`\n3-node cluster, durable SET (--fsync always) at the leader's plain client port, medians of ${ROUNDS} round(s)`);
  printTable(["load", "plaintext peers", "peer mTLS", "mTLS/plain"], rows);
  let ok = true;
  for (const [name, xs] of [["-P 1", res], ["-P 16", p16]] as const) {
    const ratio = median(xs.mtls) / median(xs.plain);
    const hit = ratio >= 0.85;
    ok &&= hit;
    console.log(`peer mTLS / plaintext peers, durable SET ${name}: ${fmtNum(ratio)}x (target >= 0.85x) ${hit ? "ok" : "TARGET MISSED"}`);
  }
  return ok;
}

async function main(): Promise<void> {
  for (const cmd of ["redis-benchmark", "redis-server", "openssl"]) {
    if (!which(cmd)) throw new Error(`${cmd} not found (Debian: apt-get install redis-server redis-tools openssl)`);
  }
  console.log(`machine: ${machineDescription()}`);
  const tmp = makeTempDir("kv-bench-tls-");
  const c = certs(join(tmp, "certs"), [1, 2, 3]);
  if (opt["skip-single"] !== true) await single(tmp, c);
  if (opt["skip-cluster"] !== true) await clusters(tmp, c);
}

main().then(
  () => {
    runCleanups();
    process.exit(0);
  },
  (e) => {
    console.error(e instanceof Error ? e.message : String(e));
    runCleanups();
    process.exit(1);
  },
);
