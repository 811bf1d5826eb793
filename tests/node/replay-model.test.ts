// Replay equals the live state, in process: random write sequences run through a one-member
// Raft group (what `kv serve` runs) on real files (tiny segments and snapshot thresholds, SAVE and background
// snapshots interleaved, clean restarts), each reply checked against the model, and after every
// restart the whole keyspace compared with the state before the stop and with the model.
// A failing sequence is shrunk and printed with its seed: SEED=<n> bun test tests/node/replay-model.test.ts
// runs that one. REPLAY_SEQUENCES=<n> runs more (default 300).
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setLogLevel } from "../../src/log.ts";
import type { ClusterNode } from "../../src/node/cluster-node.ts";
import { RecordingIo } from "../../src/storage/index.ts";
import { diffKeyspaces, formatOps, genSequence, type Keyspace, Model, type Op, prng, shrink } from "../helpers/replay-model.ts";
import { collectReplies, openOneMember } from "../helpers/one-member.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const T0 = 1_700_000_000_000;
setLogLevel("warn"); // a snapshot per few writes: their info lines would drown the output

interface RunConfig {
  segmentBytesMax: number;
  snapshotLogBytes: number;
  /** Commands proposed together (one batch, one group commit) at most. */
  pipelineMax: number;
  /** Recovery maps the files it reads (values stay there by reference), or reads them. */
  map: boolean;
}

/** The real file layer with mapping refused: recovery reads every file instead. */
class NoMapIo extends RecordingIo {
  override map(path: string): Uint8Array {
    throw new Error(`mapping ${path} refused (test)`);
  }
}

function configFor(seed: number): RunConfig {
  const r = prng(seed ^ 0x5eed);
  return {
    segmentBytesMax: [256, 1024, 4096, 65536][Math.floor(r() * 4)]!,
    snapshotLogBytes: [0, 512, 2048, 16384, 1 << 30][Math.floor(r() * 5)]!,
    pipelineMax: 1 + Math.floor(r() * 12),
    map: r() < 0.75,
  };
}

async function openLog(dir: string, cfg: RunConfig) {
  const { node: d, fatal } = await openOneMember<number>({ dataDir: dir, segmentBytesMax: cfg.segmentBytesMax, snapshotLogBytes: cfg.snapshotLogBytes, io: cfg.map ? undefined : new NoMapIo() });
  const replies = collectReplies(d, { failed: (e) => `(failed: ${e.message})` });
  return { d, replies, fatal };
}

function dump(d: ClusterNode<number>, nowMs: number): Keyspace {
  const ks: Keyspace = new Map();
  for (const [k, v, at] of d.fsm.db.entries()) if (at === undefined || at > nowMs) ks.set(k, { v, at: at === undefined ? undefined : BigInt(at), rel: false });
  return ks;
}

/** Runs ops on a fresh data dir; returns a description of the first disagreement, or null. */
async function run(ops: readonly Op[], cfg: RunConfig): Promise<string | null> {
  const dir = mkdtempSync(join(tmpdir(), "kv-replay-"));
  dirs.push(dir);
  let { d, replies, fatal } = await openLog(dir, cfg);
  const model = new Model();
  let now = T0;
  let owner = 0;
  let bg: Promise<unknown> | null = null;
  const restart = async (where: string): Promise<string | null> => {
    const before = dump(d, now);
    await d.close();
    if (fatal.length > 0) return `${where}: the node stopped: ${String(fatal[0])}`;
    ({ d, replies, fatal } = await openLog(dir, cfg));
    const after = dump(d, now);
    const vsLive = diffKeyspaces(before, after, 0);
    if (vsLive.length > 0) return `${where}: the keyspace after the restart differs from the one before the stop:\n    ${vsLive.join("\n    ")}`;
    const vsModel = diffKeyspaces(model.liveKeyspace(now), after, 0);
    if (vsModel.length > 0) return `${where}: the keyspace after the restart differs from the model:\n    ${vsModel.join("\n    ")}`;
    return null;
  };
  try {
    for (let i = 0; i < ops.length; ) {
      const op = ops[i]!;
      if ("ctl" in op) {
        i++;
        if (op.ctl === "save") await d.snapshot();
        else if (op.ctl === "bgsave") bg = d.snapshot().catch(() => {});
        else if (op.ctl === "sweep") d.sweepExpired(now, 1 + (i % 7));
        else {
          const bad = await restart(`op ${i - 1} (${op.ctl})`);
          if (bad !== null) return bad;
        }
        continue;
      }
      // A pipeline: consecutive commands proposed together, each at its own (increasing) time.
      const batch: { argv: string[]; at: number; id: number; index: number }[] = [];
      while (i < ops.length && batch.length < cfg.pipelineMax) {
        const o = ops[i]!;
        if ("ctl" in o) break;
        now += 1 + (i % 3);
        batch.push({ argv: o.cmd, at: now, id: owner++, index: i });
        d.propose(o.cmd, now, owner - 1);
        i++;
      }
      const deadline = Date.now() + 30_000; // a slow disk under a loaded CI machine, not a hang
      for (let w = 0; w < 100_000 && Date.now() < deadline && batch.some((b) => !replies.has(b.id)); w++) await Bun.sleep(1);
      for (const b of batch) {
        const got = replies.get(b.id);
        if (got === undefined) return `op ${b.index} ${JSON.stringify(b.argv)}: no reply`;
        const want = model.apply(b.argv, b.at);
        if ("reply" in want) {
          if (got !== want.reply) return `op ${b.index} ${JSON.stringify(b.argv).slice(0, 200)}: reply ${JSON.stringify(got).slice(0, 200)}, model ${JSON.stringify(want.reply).slice(0, 200)}`;
        } else {
          try {
            want.defer(got);
          } catch (e) {
            return `op ${b.index}: ${(e as Error).message}`;
          }
        }
      }
    }
    if (bg !== null) await bg;
    return await restart("end");
  } catch (e) {
    return `threw ${(e as Error).stack?.split("\n").slice(0, 4).join("\n    ")}`;
  } finally {
    await d.close().catch(() => {});
  }
}

const single = process.env.SEED !== undefined ? Number(process.env.SEED) : undefined;
const count = single !== undefined ? 1 : Number(process.env.REPLAY_SEQUENCES ?? 300);
const base = single ?? 1 + Math.floor(Math.random() * 1e9);

function sequenceFor(seed: number): Op[] {
  const r = prng(seed);
  return genSequence(seed, { length: 20 + Math.floor(r() * 100), ctl: ["save", "bgsave", "restart", "sweep", "sweep"], ctlRate: 0.08, bigValueBytes: 300_000, exactTime: true });
}

test(`${count} random write sequences replay to the state before the stop and to the model (seeds ${base}..${base + count - 1})`, async () => {
  const t0 = performance.now();
  let opsRun = 0;
  for (let s = 0; s < count; s++) {
    const seed = base + s;
    const ops = sequenceFor(seed);
    const cfg = configFor(seed);
    const bad = await run(ops, cfg);
    opsRun += ops.length;
    if (bad !== null) {
      const small = await shrink(ops, async (o) => (await run(o, cfg)) !== null);
      const again = await run(small.ops, cfg);
      throw new Error(
        `replay mismatch, seed ${seed} (SEED=${seed} bun test tests/node/replay-model.test.ts), config ${JSON.stringify(cfg)}\n  ${bad}\n` +
          `shrunk from ${ops.length} to ${small.ops.length} ops in ${small.runs} runs:\n${formatOps(small.ops)}\n  which gives: ${again}`,
      );
    }
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(`replay-model: ${count} sequences, ${opsRun} ops, in ${secs.toFixed(1)} s`);
  expect(opsRun).toBeGreaterThan(0);
}, 60_000 + count * 200); // the sequences, then up to 60 s of shrinking
