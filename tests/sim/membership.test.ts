// Membership in the simulator: the committed log's membership as the checkers follow it, and proof that
// Config Quorum (a commit backed by a majority of the membership the leader counts by, taken from the
// committed log) and Vote Quorum (an election won by a majority of it) catch a removed node or a learner
// counted in a quorum: hand-built traces, then the real core broken on purpose (patched for the test
// and restored) run under the simulator's faults until a seed shows it.
import { afterEach, describe, expect, test } from "bun:test";
import { Raft } from "../../src/raft/raft.ts";
import type { ConfChange, HardState } from "../../src/raft/types.ts";
import { Checker, type EntryDigest, type SimEvent } from "./checkers.ts";
import { replayCommand, runSeed } from "./sim.ts";

const e = (index: number, term: number, cc?: ConfChange): EntryDigest => ({ index, term, hash: index * 100 + term, ...(cc ? { cc } : {}) });
const hs = (term: number, vote: number, commit: number): HardState => ({ term, vote, commit });
const boot = [1, 2, 3].map((n) => e(n, 1, { type: "add-voter", node: n }));

function run(events: SimEvent[]): Checker {
  const c = new Checker();
  for (const ev of events) c.observe(ev);
  return c;
}
const rules = (c: Checker): string[] => [...new Set(c.violations.map((v) => v.rule))];

/** Bootstrapped 1,2,3; then node 3 removed (index 4) and node 4 added as a learner (index 5), both committed on 1 and 2. */
function twoChanges(): SimEvent[] {
  const out: SimEvent[] = [{ kind: "bootstrap", voters: [1, 2, 3], index: 3 }];
  for (const node of [1, 2, 3]) out.push({ kind: "persist", node, entries: boot, hardState: hs(1, 0, 3) });
  const changes = [e(4, 2, { type: "remove-node", node: 3 }), e(5, 2, { type: "add-learner", node: 4 })];
  for (const node of [1, 2]) out.push({ kind: "persist", node, entries: changes, hardState: hs(2, 1, 3) });
  out.push({ kind: "persist", node: 1, entries: [], hardState: hs(2, 1, 5) });
  return out;
}

describe("the committed log's membership", () => {
  test("follows conf-change entries as they commit", () => {
    const c = run(twoChanges());
    expect(c.violations).toEqual([]);
    expect(c.configs).toEqual([
      { index: 0, voters: [], learners: [] },
      { index: 3, voters: [1, 2, 3], learners: [] },
      { index: 4, voters: [1, 2], learners: [] },
      { index: 5, voters: [1, 2], learners: [4] },
    ]);
    // What a node that applied up to somewhere in [lo, hi] may count by; unknown past the commit.
    expect(c.configsIn(3, 3)?.map((x) => x.index)).toEqual([3]);
    expect(c.configsIn(3, 5)?.map((x) => x.index)).toEqual([5, 4, 3]);
    expect(c.configsIn(6, 6)).toBeUndefined();
  });

  test("Config Quorum: an entry held by a majority only with the removed node and the learner is not committed", () => {
    const ev = twoChanges();
    // Entry 6 durable on 1, 3 (removed) and 4 (learner): not a majority of voters 1,2.
    const six = e(6, 2);
    ev.push({ kind: "persist", node: 1, entries: [six] });
    ev.push({ kind: "persist", node: 3, entries: [e(4, 2, { type: "remove-node", node: 3 }), e(5, 2, { type: "add-learner", node: 4 }), six] });
    ev.push({ kind: "persist", node: 4, entries: [...boot, e(4, 2, { type: "remove-node", node: 3 }), e(5, 2, { type: "add-learner", node: 4 }), six] });
    ev.push({ kind: "persist", node: 1, entries: [], hardState: hs(2, 1, 6) });
    const c = run(ev);
    expect(rules(c)).toContain("Config Quorum");
    expect(c.violations.find((v) => v.rule === "Config Quorum")!.detail).toMatch(/committed 6 while 1 of voters 1,2 .* non-voters holding it: 3,4/);
    // The same entry on 1 and 2: fine.
    const good = twoChanges();
    for (const node of [1, 2]) good.push({ kind: "persist", node, entries: [e(6, 2)] });
    good.push({ kind: "persist", node: 1, entries: [], hardState: hs(2, 1, 6) });
    expect(run(good).violations).toEqual([]);
  });

  test("Vote Quorum: a leader elected with a removed node's vote, counted by the membership it applied", () => {
    const ev = twoChanges();
    ev.push({ kind: "persist", node: 1, entries: [], hardState: hs(3, 1, 5) });
    ev.push({ kind: "persist", node: 3, entries: [], hardState: hs(3, 1, 3) });
    ev.push({ kind: "send", node: 3, msg: { type: "vote-resp", from: 3, to: 1, term: 3, reject: false } as never });
    const c = run(ev);
    // Having applied the removal (index 4), node 1 counts by voters 1,2: its own vote and 3's are 1 of 2.
    c.leaderElected(1, 3, 5);
    expect(c.violations.map((v) => v.detail)).toEqual(["node 1 leads term 3 (applied 5) with the votes of 1,3: 1 of voters 1,2 (membership at 5); votes of non-voters (removed or learners): 3"]);
    // Before applying it, 1,2,3 were the voters: 2 of 3 is a majority.
    const before = run(ev);
    before.leaderElected(1, 3, 3);
    expect(before.violations).toEqual([]);
  });
});

type Patch = () => () => void;

/** The leader keeps counting a node it removed (its progress kept, its acknowledgements counted). */
const countRemoved: Patch = () => {
  const proto = Raft.prototype as any;
  const apply = proto.applyConfChange;
  const commit = proto.maybeCommit;
  proto.applyConfChange = function (this: any, cc: ConfChange) {
    const pr = this.prs.get(cc.node);
    apply.call(this, cc);
    if (cc.type === "remove-node" && pr && cc.node !== this.id) {
      this.prs.set(cc.node, pr);
      (this.ghosts ??= new Set()).add(cc.node);
    }
  };
  proto.maybeCommit = function (this: any) {
    const voters = this.voters;
    this.voters = new Set([...voters, ...(this.ghosts ?? [])]);
    try {
      return commit.call(this);
    } finally {
      this.voters = voters;
    }
  };
  return () => {
    proto.applyConfChange = apply;
    proto.maybeCommit = commit;
  };
};

/** The leader counts its learners' acknowledgements as voters'. */
const countLearners: Patch = () => {
  const proto = Raft.prototype as any;
  const commit = proto.maybeCommit;
  proto.maybeCommit = function (this: any) {
    const voters = this.voters;
    this.voters = new Set([...voters, ...this.learners]);
    try {
      return commit.call(this);
    } finally {
      this.voters = voters;
    }
  };
  return () => {
    proto.maybeCommit = commit;
  };
};

/** A node keeps asking for and counting the vote of a member it removed. */
const countRemovedVotes: Patch = () => {
  const proto = Raft.prototype as any;
  const apply = proto.applyConfChange;
  const campaign = proto.campaign;
  const poll = proto.poll;
  proto.applyConfChange = function (this: any, cc: ConfChange) {
    apply.call(this, cc);
    if (cc.type === "remove-node" && cc.node !== this.id) (this.ghosts ??= new Set()).add(cc.node);
    if (cc.type !== "remove-node") this.ghosts?.delete(cc.node);
  };
  const withGhosts = (f: (...a: unknown[]) => unknown) =>
    function (this: any, ...args: unknown[]) {
      const voters = this.voters;
      if (this.voters.has(this.id)) this.voters = new Set([...voters, ...(this.ghosts ?? [])]);
      try {
        return f.apply(this, args);
      } finally {
        this.voters = voters;
      }
    };
  proto.campaign = withGhosts(campaign);
  proto.poll = withGhosts(poll);
  return () => {
    proto.applyConfChange = apply;
    proto.campaign = campaign;
    proto.poll = poll;
  };
};

let restore: (() => void) | undefined;
afterEach(() => {
  restore?.();
  restore = undefined;
});

/** Seeds (3 and 5 nodes in turn) until one reports `rule`; bounded by a count and a time. */
async function firstCatch(rule: string, maxSeeds: number, maxMs: number): Promise<string | undefined> {
  const t0 = performance.now();
  for (let seed = 1; seed <= maxSeeds && performance.now() - t0 < maxMs; seed++) {
    for (const nodes of [3, 5] as const) {
      const r = await runSeed({ seed, nodes });
      const v = r.violations.find((x) => x.rule === rule);
      if (v) return `${replayCommand(seed, nodes)}: [${v.rule}] ${v.detail}`;
    }
  }
  return undefined;
}

describe("the checkers catch a broken core under the simulator's faults", () => {
  test("a leader counting a removed node: Config Quorum", async () => {
    restore = countRemoved();
    const found = await firstCatch("Config Quorum", 400, 40_000);
    console.log(found);
    expect(found).toMatch(/\[Config Quorum\] leader \d+ .*no majority of voters/);
  }, 60_000);

  test("a leader counting its learners as voters: Config Quorum", async () => {
    restore = countLearners();
    const found = await firstCatch("Config Quorum", 400, 40_000);
    console.log(found);
    expect(found).toMatch(/\[Config Quorum\] leader \d+ .*no majority of voters/);
  }, 60_000);

  test("a candidate asking for and counting the vote of a node removed: Vote Quorum", async () => {
    restore = countRemovedVotes();
    const found = await firstCatch("Vote Quorum", 400, 40_000);
    console.log(found);
    expect(found).toMatch(/\[Vote Quorum\] node \d+ leads term \d+ .*votes of non-voters/);
  }, 60_000);

  test("the same seeds with the core intact: no violation", async () => {
    for (let seed = 1; seed <= 40; seed++) {
      for (const nodes of [3, 5] as const) {
        const r = await runSeed({ seed, nodes });
        expect(r.violations.map((v) => `${replayCommand(seed, nodes)}: [${v.rule}] ${v.detail}`)).toEqual([]);
      }
    }
  }, 60_000);
});
