// Replay equals the live state, through the real binary: random write sequences (every write
// command, SAVE and BGSAVE, tiny segments and snapshot threshold) with clean restarts and
// kill -9s; each reply checked against the model; after every restart the whole keyspace
// (values, expiry times) must equal the one before the stop, and the model's. Many sequences
// run against one process (each starts with FLUSHALL); a failing one is rerun alone on a fresh
// data dir, shrunk and printed with its seed: SEED=<n> bun test tests/integration/replay.test.ts.
// REPLAY_SEQUENCES=<n> runs n / 5 here (default 60).
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkReplies, diffKeyspaces, dumpResp, formatOps, genSequence, type Keyspace, Model, type Op, prng, shrink } from "../helpers/replay-model.ts";
import { RawResp } from "../helpers/resp-raw.ts";
import { type KvProcess, startKv } from "../helpers/server.ts";

/** Relative expiries are stamped by the server's clock: the model's may differ by this much. */
const TTL_SLACK_MS = 120_000;
const ARGS = ["--snapshot-log-bytes", "2kb", "--wal-segment-bytes", "1kb"];

class Node {
  kv!: KvProcess;
  c!: RawResp;
  restarts = 0;
  private constructor(readonly dataDir: string) {}

  static async start(): Promise<Node> {
    const n = new Node(mkdtempSync(join(tmpdir(), "kv-replay-bin-")));
    await n.boot();
    return n;
  }

  private async boot(): Promise<void> {
    this.kv = await startKv(ARGS, { dataDir: this.dataDir });
    this.c = await RawResp.connect(this.kv.port);
  }

  /** Stops (SIGTERM: must exit 0; SIGKILL) and starts again on the same data dir. */
  async restart(signal: "SIGTERM" | "SIGKILL"): Promise<string | null> {
    this.c.close();
    const code = await this.kv.stop({ signal, keepData: true });
    if (signal === "SIGTERM" && code !== 0) return `exit code ${code} on SIGTERM:\n${this.kv.output().slice(-2000)}`;
    this.restarts++;
    try {
      await this.boot();
    } catch (e) {
      // The error's own lines, not the bundled source printed around them.
      const text = (e as Error).message;
      const lines = text.split("\n").filter((l) => /(Error|error|failed)\b/.test(l) && l.length < 400);
      return `the node did not start again: ${lines.length > 0 ? lines.slice(0, 5).join("\n    ") : text.slice(-1500)}`;
    }
    return null;
  }

  async close(): Promise<void> {
    this.c.close();
    await this.kv.stop({ keepData: true });
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** kill -9s with commands in flight: how many, commands sent, acknowledged, and applied (found in the keyspace after). */
const inFlight = { kills: 0, sent: 0, acked: 0, applied: 0 };

function pipelineMaxFor(seed: number): number {
  return 1 + Math.floor(prng(seed ^ 0x9e37)() * 16);
}

/** The keys of `ks` that have no expiry or expire after `ms`. */
function outliving(ks: Keyspace, ms: bigint): Keyspace {
  return new Map([...ks].filter(([, e]) => e.at === undefined || e.at > ms));
}

/** Runs ops on node (its keyspace is emptied first); returns the first disagreement, or null. */
async function runOn(node: Node, ops: readonly Op[], pipelineMax: number): Promise<string | null> {
  const model = new Model();
  const flushed = await node.c.call([["FLUSHALL"]]);
  if (flushed[0] !== "+OK\r\n") return `FLUSHALL: ${flushed[0]}`;
  const restart = async (where: string, signal: "SIGTERM" | "SIGKILL"): Promise<string | null> => {
    const before: Keyspace = await dumpResp(node.c);
    const failed = await node.restart(signal);
    if (failed !== null) return `${where}: ${failed}`;
    const after = await dumpResp(node.c);
    // A key whose expiry time passed during the restart (PX 100, say) is legitimately gone: only
    // keys that outlive the dump after the restart (with the model's slack for relative expiries)
    // are compared.
    const dumpedMs = BigInt(Date.now());
    const vsLive = diffKeyspaces(outliving(before, dumpedMs), outliving(after, dumpedMs), 0);
    if (vsLive.length > 0) return `${where}: the keyspace after the restart differs from the one before the stop:\n    ${vsLive.join("\n    ")}`;
    const withSlack = dumpedMs + BigInt(TTL_SLACK_MS);
    const vsModel = diffKeyspaces(outliving(model.ks, withSlack), outliving(after, withSlack), TTL_SLACK_MS);
    if (vsModel.length > 0) return `${where}: the keyspace after the restart differs from the model:\n    ${vsModel.join("\n    ")}`;
    return null;
  };
  for (let i = 0; i < ops.length; ) {
    const op = ops[i]!;
    if ("ctl" in op) {
      i++;
      if (op.ctl === "save") {
        const r = await node.c.call([["SAVE"]]);
        if (r[0] !== "+OK\r\n") return `op ${i - 1} SAVE: ${r[0]}`;
      } else if (op.ctl === "bgsave") {
        const r = await node.c.call([["BGSAVE"]]);
        if (!/^(\+Background saving started|-ERR Background save already in progress)\r\n$/.test(r[0]!)) return `op ${i - 1} BGSAVE: ${r[0]}`;
      } else if (op.ctl === "kill" && i % 2 === 0 && i < ops.length && "cmd" in ops[i]!) {
        // kill -9 with the next commands in flight: what was acknowledged must be there, and the
        // keyspace must be the model's after some prefix of them (each all or nothing).
        const cmds: string[][] = [];
        const first = i;
        while (i < ops.length && cmds.length < pipelineMax && !("ctl" in ops[i]!)) cmds.push((ops[i++] as { cmd: string[] }).cmd);
        const nowMs = Date.now();
        node.c.send(cmds);
        await Bun.sleep(first % 4);
        const acked = node.c.received();
        const failed = await node.restart("SIGKILL");
        if (failed !== null) return `op ${first - 1} (kill in flight): ${failed}`;
        const bad = checkReplies(model, cmds.slice(0, acked.length), acked, nowMs, first);
        if (bad !== null) return bad;
        const after = await dumpResp(node.c);
        let m = model;
        let found = false;
        for (let p = acked.length; p <= cmds.length; p++) {
          if (diffKeyspaces(m.ks, after, TTL_SLACK_MS).length === 0) {
            found = true;
            inFlight.applied += p;
            break;
          }
          if (p === cmds.length) break;
          m = m.clone();
          if (!("reply" in m.apply(cmds[p]!, nowMs))) return null; // a result the model cannot compute without its reply: the rest is unchecked
        }
        inFlight.kills++;
        inFlight.sent += cmds.length;
        inFlight.acked += acked.length;
        if (!found) {
          return `op ${first - 1} (kill -9 with ${cmds.length} commands in flight, ${acked.length} acknowledged): the keyspace after the restart is no prefix's:\n    ${diffKeyspaces(model.ks, after, TTL_SLACK_MS).join("\n    ")}`;
        }
        if (m !== model) {
          model.ks.clear();
          for (const [k, e] of m.ks) model.ks.set(k, e);
        }
      } else {
        const bad = await restart(`op ${i - 1} (${op.ctl})`, op.ctl === "kill" ? "SIGKILL" : "SIGTERM");
        if (bad !== null) return bad;
      }
      continue;
    }
    const cmds: string[][] = [];
    const first = i;
    while (i < ops.length && cmds.length < pipelineMax && !("ctl" in ops[i]!)) cmds.push((ops[i++] as { cmd: string[] }).cmd);
    const nowMs = Date.now();
    const got = await node.c.call(cmds);
    const bad = checkReplies(model, cmds, got, nowMs, first);
    if (bad !== null) return bad;
  }
  return await restart("end", "SIGTERM");
}

/** Runs ops alone on a fresh node. */
async function runFresh(ops: readonly Op[], pipelineMax: number): Promise<string | null> {
  const node = await Node.start();
  try {
    return await runOn(node, ops, pipelineMax);
  } finally {
    await node.close();
  }
}

const single = process.env.SEED !== undefined ? Number(process.env.SEED) : undefined;
const count = single !== undefined ? 1 : Math.max(1, Math.floor(Number(process.env.REPLAY_SEQUENCES ?? 300) / 5));
const base = single ?? 1 + Math.floor(Math.random() * 1e9);

function sequenceFor(seed: number): Op[] {
  const r = prng(seed);
  return genSequence(seed, { length: 10 + Math.floor(r() * 50), ctl: ["save", "bgsave", "restart", "kill", "kill"], ctlRate: 0.05, bigValueBytes: 100_000 });
}

test(`${count} random write sequences through ./kv with restarts and kill -9 (seeds ${base}..${base + count - 1})`, async () => {
  const t0 = performance.now();
  const node = await Node.start();
  let opsRun = 0;
  try {
    for (let s = 0; s < count; s++) {
      const seed = base + s;
      const ops = sequenceFor(seed);
      const pipe = pipelineMaxFor(seed);
      const bad = await runOn(node, ops, pipe);
      opsRun += ops.length;
      if (bad === null) continue;
      // Rerun alone (no history before it), then shrink through fresh processes.
      const alone = await runFresh(ops, pipe);
      if (alone === null) throw new Error(`replay mismatch, seed ${seed}, after ${s} earlier sequences on the same node (alone it passes):\n  ${bad}\n${formatOps(ops)}`);
      const small = await shrink([...ops], async (o) => (await runFresh(o, pipe)) !== null, 150, Date.now() + 120_000);
      throw new Error(
        `replay mismatch, seed ${seed} (SEED=${seed} bun test tests/integration/replay.test.ts)\n  ${alone}\n` +
          `shrunk from ${ops.length} to ${small.ops.length} ops in ${small.runs} runs (pipeline ${pipe}; every sequence starts with FLUSHALL):\n${formatOps(small.ops)}\n  which gives: ${await runFresh(small.ops, pipe)}`,
      );
    }
  } finally {
    await node.close();
  }
  console.log(`replay (binary): ${count} sequences, ${opsRun} ops, ${node.restarts} restarts, in ${((performance.now() - t0) / 1000).toFixed(1)} s; kill -9 with commands in flight: ${JSON.stringify(inFlight)}`);
  expect(node.restarts).toBeGreaterThan(0);
}, 150_000 + count * 1000); // the sequences, then up to 120 s of shrinking
