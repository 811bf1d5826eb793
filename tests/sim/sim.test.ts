// Runs the deterministic simulator over thousands of seeds (SIM_SEEDS raises it; SEED=n replays one seed).
import { describe, expect, test } from "bun:test";
import { MemoryRaftStorage } from "../../src/node/memory-storage.ts";
import { RaftLog } from "../../src/raft/log.ts";
import { FAULT_KINDS, WORKLOAD_KINDS, replayCommand, runSeed, type SimResult } from "./sim.ts";

const SEEDS_PER_SIZE = Number(process.env.SIM_SEEDS ?? 2000) / 2;
const CHUNK = 100;
const single = process.env.SEED !== undefined ? Number(process.env.SEED) : undefined;

function report(r: SimResult): string {
  return r.violations
    .slice(0, 3)
    .map((v) => `[${v.rule}] at step ${v.at}: ${v.detail}\n  replay: ${replayCommand(r.seed, r.nodes)} --trace`)
    .join("\n");
}

const totals = { faults: new Map<string, number>(), workload: new Map<string, number>(), seeds: 0 };

async function runRange(nodes: 3 | 5, from: number, to: number): Promise<void> {
  const failures: string[] = [];
  for (let seed = from; seed < to; seed++) {
    const r = await runSeed({ seed, nodes });
    totals.seeds++;
    for (const k of FAULT_KINDS) totals.faults.set(k, (totals.faults.get(k) ?? 0) + r.faults[k]);
    for (const k of WORKLOAD_KINDS) totals.workload.set(k, (totals.workload.get(k) ?? 0) + r.workload[k]);
    if (r.violations.length > 0) failures.push(report(r));
  }
  expect(failures).toEqual([]);
}

if (single !== undefined) {
  describe(`replay SEED=${single}`, () => {
    for (const nodes of [3, 5] as const) {
      test(`seed ${single}, ${nodes} nodes`, async () => {
        const r = await runSeed({ seed: single, nodes, keepTrace: true });
        if (r.violations.length > 0) console.log(r.trace.slice(-200).join("\n"));
        expect(report(r)).toBe("");
      });
    }
  });
} else {
  for (const nodes of [3, 5] as const) {
    describe(`simulator, ${nodes} nodes`, () => {
      for (let from = 1; from <= SEEDS_PER_SIZE; from += CHUNK) {
        const to = Math.min(from + CHUNK, SEEDS_PER_SIZE + 1);
        test(`seeds ${from}..${to - 1}: every safety, liveness and linearizability check holds`, () => runRange(nodes, from, to));
      }
    });
  }

  describe("simulator coverage", () => {
    test("every fault kind and workload kind was exercised", async () => {
      if (totals.seeds === 0) await runRange(3, 1, 51);
      for (const k of FAULT_KINDS) expect(`${k}:${totals.faults.get(k) ?? 0}`).not.toBe(`${k}:0`);
      for (const k of WORKLOAD_KINDS) expect(`${k}:${totals.workload.get(k) ?? 0}`).not.toBe(`${k}:0`);
    });
  });
}

describe("simulator properties", () => {
  test("the same seed replays the same trace", async () => {
    const a = await runSeed({ seed: 4711, nodes: 5, keepTrace: true });
    const b = await runSeed({ seed: 4711, nodes: 5, keepTrace: true });
    expect(a.trace.length).toBeGreaterThan(1000);
    expect(b.trace).toEqual(a.trace);
    const c = await runSeed({ seed: 4712, nodes: 5, keepTrace: true });
    expect(c.trace).not.toEqual(a.trace);
  });

  test("a run past its work budget fails, naming the seed", async () => {
    const r = await runSeed({ seed: 7, nodes: 3, messagesMax: 500 });
    expect(r.violations.map((v) => v.rule)).toEqual(["Work Budget"]);
    expect(r.violations[0]?.detail).toContain("seed 7 (3 nodes): more than 500 messages");
    const w = await runSeed({ seed: 7, nodes: 3, writesMax: 50 });
    expect(w.violations.map((v) => v.rule)).toEqual(["Work Budget"]);
    const ok = await runSeed({ seed: 7, nodes: 3 });
    expect(ok.violations).toEqual([]);
    expect(ok.stats.messages).toBeGreaterThan(500);
    expect(ok.stats.writes).toBeGreaterThan(50);
  });

  test("a node cut off and coming back never moves a stable majority's term (pre-vote and check-quorum on)", async () => {
    let probes = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const r = await runSeed({ seed, nodes: 5 });
      probes += r.stats.probes;
      expect(r.violations).toEqual([]);
    }
    expect(probes).toBeGreaterThan(10);
  });

  test("without pre-vote, a node cut off and coming back deposes the leader (Disruption)", async () => {
    const rules = new Set<string>();
    for (let seed = 1; seed <= 20 && !rules.has("Disruption"); seed++) {
      for (const v of (await runSeed({ seed, nodes: 3, raft: { preVote: false } })).violations) rules.add(v.rule);
    }
    expect([...rules]).toEqual(["Disruption"]);
  });

  test("without check-quorum (no leader lease), a node that lost its leader forces an election (Disruption)", async () => {
    const rules = new Set<string>();
    for (let seed = 1; seed <= 100 && !rules.has("Disruption"); seed++) {
      for (const v of (await runSeed({ seed, nodes: 5, raft: { checkQuorum: false } })).violations) rules.add(v.rule);
    }
    expect([...rules]).toEqual(["Disruption"]);
  });

  test("the simulator finds the bug when voters ignore the up-to-date rule (§5.4.1)", async () => {
    const original = RaftLog.prototype.isUpToDate;
    RaftLog.prototype.isUpToDate = () => true;
    try {
      const failing: number[] = [];
      for (let seed = 1; seed <= 40 && failing.length === 0; seed++) {
        const r = await runSeed({ seed, nodes: 5 });
        if (r.violations.length > 0) failing.push(seed);
      }
      expect(failing.length).toBeGreaterThan(0);
    } finally {
      RaftLog.prototype.isUpToDate = original;
    }
  });

  test("the simulator finds the bug when a restart forgets the vote of its term (Vote Once)", async () => {
    const original = MemoryRaftStorage.prototype.initialState;
    MemoryRaftStorage.prototype.initialState = function (this: MemoryRaftStorage) {
      const st = original.call(this);
      return { ...st, hardState: { ...st.hardState, vote: 0 } };
    };
    try {
      const rules = new Set<string>();
      for (let seed = 1; seed <= 20 && rules.size === 0; seed++) for (const v of (await runSeed({ seed, nodes: 3 })).violations) rules.add(v.rule);
      expect([...rules]).toContain("Vote Once");
    } finally {
      MemoryRaftStorage.prototype.initialState = original;
    }
  });

  test("the simulator finds the bug when followers commit past what the leader vouched for", async () => {
    const original = RaftLog.prototype.commitTo;
    RaftLog.prototype.commitTo = function (this: RaftLog, to: number) {
      original.call(this, Math.min(to + 1, this.lastIndex()));
    };
    try {
      let found = false;
      for (let seed = 1; seed <= 60 && !found; seed++) found = (await runSeed({ seed, nodes: 5 })).violations.length > 0;
      expect(found).toBe(true);
    } finally {
      RaftLog.prototype.commitTo = original;
    }
  });
});
