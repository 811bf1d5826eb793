// The checkers must be able to fail: hand-built traces with known violations, each caught by the right rule.
import { describe, expect, test } from "bun:test";
import type { HardState, Message } from "../../src/raft/types.ts";
import { Checker, type EntryDigest, type SimEvent } from "./checkers.ts";

const e = (index: number, term: number, hash = index * 100 + term): EntryDigest => ({ index, term, hash });
const hs = (term: number, vote: number, commit: number): HardState => ({ term, vote, commit });

function run(events: SimEvent[]): Checker {
  const c = new Checker();
  for (const ev of events) c.observe(ev);
  return c;
}

const rules = (c: Checker): string[] => [...new Set(c.violations.map((v) => v.rule))];

/** Three nodes persist the same two entries, commit them, and apply them: a healthy history. */
function healthy(): SimEvent[] {
  const out: SimEvent[] = [];
  for (const node of [1, 2, 3]) out.push({ kind: "persist", node, entries: [e(1, 1), e(2, 1)], hardState: hs(1, 1, 0) });
  out.push({ kind: "role", node: 1, term: 1, role: "leader" });
  for (const node of [1, 2, 3]) {
    out.push({ kind: "persist", node, entries: [], hardState: hs(1, 1, 2) });
    out.push({ kind: "apply", node, entry: e(1, 1), value: "" });
    out.push({ kind: "apply", node, entry: e(2, 1), value: "a" });
  }
  return out;
}

describe("checkers catch known violations", () => {
  test("a healthy trace has no violations", () => {
    const c = run([
      ...healthy(),
      { kind: "write-invoke", value: "a" },
      { kind: "write-ack", value: "a" },
      { kind: "read-invoke", id: "r1" },
      { kind: "read-return", id: "r1", value: "a" },
    ]);
    expect(c.violations).toEqual([]);
  });

  test("Vote Once: a node votes for two candidates in one term across a restart, or grants two", () => {
    const durable = run([
      ...healthy(),
      { kind: "persist", node: 3, entries: [], hardState: hs(2, 2, 2) },
      { kind: "crash", node: 3 },
      { kind: "restore", node: 3, index: 0 },
      { kind: "persist", node: 3, entries: [], hardState: hs(2, 1, 2) },
    ]);
    expect(rules(durable)).toEqual(["Vote Once"]);
    const forgot = run([...healthy(), { kind: "persist", node: 3, entries: [], hardState: hs(2, 2, 2) }, { kind: "persist", node: 3, entries: [], hardState: hs(2, 0, 2) }]);
    expect(rules(forgot)).toEqual(["Vote Once"]);
    const grant = (to: number): SimEvent => ({ kind: "send", node: 3, msg: { type: "vote-resp", from: 3, to, term: 2, reject: false } as Message });
    const granted = run([...healthy(), { kind: "persist", node: 3, entries: [], hardState: hs(2, 2, 2) }, grant(2), { kind: "crash", node: 3 }, grant(1)]);
    expect(rules(granted)).toContain("Vote Once");
    // Votes in different terms, and a repeated grant to the same candidate, are fine.
    const fine = run([
      ...healthy(),
      { kind: "persist", node: 3, entries: [], hardState: hs(2, 2, 2) },
      grant(2),
      grant(2),
      { kind: "persist", node: 3, entries: [], hardState: hs(3, 1, 2) },
    ]);
    expect(fine.violations).toEqual([]);
  });

  test("Durable Quorum: an index committed while only a minority of voters durably held it", () => {
    const commitWith = (holders: number[], voters: number[]): Checker =>
      run([
        ...holders.map((node): SimEvent => ({ kind: "persist", node, entries: [e(1, 1), e(2, 1)], hardState: hs(1, 1, 0) })),
        { kind: "persist", node: 1, entries: [], hardState: hs(1, 1, 2), voters },
      ]);
    expect(rules(commitWith([1], [1, 2, 3]))).toEqual(["Durable Quorum"]);
    expect(rules(commitWith([1, 2], [1, 2, 3, 4]))).toEqual(["Durable Quorum"]);
    expect(commitWith([1, 2], [1, 2, 3]).violations).toEqual([]);
    // Committed just before a membership change took effect: a majority of the previous voters counts.
    const changed = run([
      { kind: "persist", node: 1, entries: [e(1, 1)], hardState: hs(1, 1, 0), voters: [1, 2, 3] },
      { kind: "persist", node: 2, entries: [e(1, 1)], hardState: hs(1, 1, 0) },
      { kind: "persist", node: 1, entries: [], hardState: hs(1, 1, 1), voters: [1, 2, 3, 4] },
    ]);
    expect(changed.violations).toEqual([]);
  });

  test("Disruption: a rejoining node moves the stable majority to a new term, or deposes its leader", () => {
    const watch: SimEvent = { kind: "stable-start", nodes: [1, 2], leader: 1, term: 1 };
    const bumped = run([...healthy(), watch, { kind: "role", node: 3, term: 5, role: "candidate" }, { kind: "role", node: 2, term: 5, role: "follower" }]);
    expect(rules(bumped)).toEqual(["Disruption"]);
    expect(bumped.violations[0]?.detail).toContain("node 2 of the stable majority 1,2 (leader 1, term 1) became follower in term 5");
    const deposed = run([...healthy(), watch, { kind: "role", node: 1, term: 1, role: "follower" }]);
    expect(rules(deposed)).toEqual(["Disruption"]);
    // The cut-off node may campaign alone; outside the window, terms move freely.
    const fine = run([
      ...healthy(),
      watch,
      { kind: "role", node: 3, term: 1, role: "pre-candidate" },
      { kind: "role", node: 3, term: 1, role: "follower" },
      { kind: "stable-end" },
      { kind: "role", node: 2, term: 2, role: "candidate" },
    ]);
    expect(fine.violations).toEqual([]);
  });

  test("Election Safety: two leaders in one term", () => {
    const c = run([...healthy(), { kind: "role", node: 2, term: 1, role: "leader" }]);
    expect(rules(c)).toEqual(["Election Safety"]);
  });

  test("Leader Completeness: a leader of a later term without a committed entry (committed entry lost)", () => {
    const c = run([
      ...healthy(),
      { kind: "persist", node: 3, entries: [e(2, 2)], hardState: hs(2, 3, 1) }, // node 3 lost entry 2/1...
    ]);
    // ...which is itself caught: it overwrote an entry at or below its commit.
    expect(rules(c)).toContain("State Machine Safety");
    const d = run([
      { kind: "persist", node: 1, entries: [e(1, 1), e(2, 1)], hardState: hs(1, 1, 2) },
      { kind: "persist", node: 2, entries: [e(1, 1)], hardState: hs(2, 2, 1) },
      { kind: "role", node: 2, term: 2, role: "leader" },
    ]);
    expect(rules(d)).toEqual(["Leader Completeness"]);
  });

  test("Leader Completeness is about later terms: a late leader of an older term is not flagged", () => {
    const c = run([
      { kind: "persist", node: 1, entries: [e(1, 1), e(2, 3)], hardState: hs(3, 1, 2) },
      { kind: "persist", node: 2, entries: [e(1, 1)], hardState: hs(2, 2, 1) },
      { kind: "role", node: 2, term: 2, role: "leader" },
    ]);
    expect(c.violations).toEqual([]);
  });

  test("Leader Append-Only: a leader overwrites its own entry", () => {
    const c = run([
      { kind: "persist", node: 1, entries: [e(1, 1), e(2, 2)], hardState: hs(2, 1, 1) },
      { kind: "role", node: 1, term: 2, role: "leader" },
      { kind: "persist", node: 1, entries: [e(2, 1)] },
    ]);
    expect(rules(c)).toContain("Leader Append-Only");
  });

  test("Log Matching: the same (index, term) on two nodes with different prefixes", () => {
    const c = run([
      { kind: "persist", node: 1, entries: [e(1, 1, 111), e(2, 2)] },
      { kind: "persist", node: 2, entries: [e(1, 1, 999), e(2, 2)] },
    ]);
    expect(rules(c)).toEqual(["Log Matching"]);
  });

  test("State Machine Safety: two nodes apply different entries at one index", () => {
    const c = run([
      { kind: "persist", node: 1, entries: [e(1, 1)], hardState: hs(1, 0, 1) },
      { kind: "persist", node: 2, entries: [e(1, 2)], hardState: hs(2, 0, 1) },
      { kind: "apply", node: 1, entry: e(1, 1), value: "" },
      { kind: "apply", node: 2, entry: e(1, 2), value: "" },
    ]);
    expect(rules(c)).toContain("State Machine Safety");
  });

  test("State Machine Safety: applying an entry beyond the durable commit, or out of order", () => {
    const c = run([
      { kind: "persist", node: 1, entries: [e(1, 1), e(2, 1)], hardState: hs(1, 0, 1) },
      { kind: "apply", node: 1, entry: e(2, 1), value: "" },
    ]);
    expect(c.violations.map((v) => v.detail)).toEqual([
      "node 1 applied 2 after 0",
      "node 1 applied 2 beyond its durable commit 1",
    ]);
  });

  test("terms and commit indexes never decrease", () => {
    const c = run([
      { kind: "persist", node: 1, entries: [e(1, 1), e(2, 1)], hardState: hs(3, 0, 2) },
      { kind: "persist", node: 1, entries: [], hardState: hs(2, 0, 1) },
    ]);
    expect(rules(c)).toEqual(["Monotonic Term", "Monotonic Commit"]);
  });

  test("Persist Before Send: a vote granted, a vote asked and an append acknowledged before they are durable", () => {
    const grant: Message = { type: "vote-resp", from: 2, to: 1, term: 2, reject: false };
    const ask: Message = { type: "vote", from: 1, to: 2, term: 2, lastIndex: 0, lastTerm: 0, transfer: false };
    const ack: Message = { type: "append-resp", from: 2, to: 1, term: 1, index: 5, reject: false, rejectHint: 0, hintTerm: 0 };
    const c = run([
      { kind: "persist", node: 2, entries: [e(1, 1)], hardState: hs(1, 0, 0) },
      { kind: "send", node: 2, msg: grant },
      { kind: "send", node: 1, msg: ask },
      { kind: "send", node: 2, msg: ack },
    ]);
    expect(rules(c)).toEqual(["Persist Before Send"]);
    expect(c.violations.map((v) => v.detail)).toEqual([
      "node 2 sent vote-resp at term 2 with durable term 1",
      "node 2 granted a vote to 1 in term 2 before persisting it",
      "node 1 sent vote at term 2 with durable term 0",
      "node 1 asked for votes before persisting its own vote",
      "node 2 acknowledged index 5 with durable last index 1",
    ]);
    expect(c.violations.some((v) => v.detail.includes("granted a vote"))).toBe(true);
    expect(c.violations.some((v) => v.detail.includes("acknowledged index 5"))).toBe(true);
  });

  test("Linearizable Read: a read going back in time (after another read saw a newer value)", () => {
    const c = run([
      ...healthy(),
      { kind: "persist", node: 1, entries: [e(3, 1)], hardState: hs(1, 1, 3) },
      { kind: "apply", node: 1, entry: e(3, 1), value: "b" },
      { kind: "read-invoke", id: "r1" },
      { kind: "read-return", id: "r1", value: "b" },
      { kind: "read-invoke", id: "r2" },
      { kind: "read-return", id: "r2", value: "a" },
    ]);
    expect(rules(c)).toEqual(["Linearizable Read"]);
    expect(c.violations[0]?.detail).toContain("read r2");
  });

  test("Linearizable Read: a stale read after an acknowledged write", () => {
    const c = run([
      ...healthy(),
      { kind: "write-invoke", value: "b" },
      { kind: "persist", node: 1, entries: [e(3, 1)], hardState: hs(1, 1, 3) },
      { kind: "apply", node: 1, entry: e(3, 1), value: "b" },
      { kind: "write-ack", value: "b" },
      { kind: "read-invoke", id: "r1" },
      { kind: "read-return", id: "r1", value: "a" },
    ]);
    expect(rules(c)).toEqual(["Linearizable Read"]);
  });

  test("Linearizable Read: a concurrent write may or may not be seen", () => {
    const c = run([
      ...healthy(),
      { kind: "read-invoke", id: "r1" },
      { kind: "write-invoke", value: "b" },
      { kind: "persist", node: 1, entries: [e(3, 1)], hardState: hs(1, 1, 3) },
      { kind: "apply", node: 1, entry: e(3, 1), value: "b" },
      { kind: "read-return", id: "r1", value: "b" },
      { kind: "read-invoke", id: "r2" },
      { kind: "read-return", id: "r2", value: "b" },
      { kind: "write-ack", value: "b" },
    ]);
    expect(c.violations).toEqual([]);
  });

  test("Linearizable Read: a value that was never committed", () => {
    const c = run([...healthy(), { kind: "read-invoke", id: "r1" }, { kind: "read-return", id: "r1", value: "ghost" }]);
    expect(rules(c)).toEqual(["Linearizable Read"]);
  });

  test("an acknowledged write that was never applied is caught", () => {
    const c = run([...healthy(), { kind: "write-ack", value: "never" }]);
    expect(rules(c)).toEqual(["Acknowledged Write Applied"]);
  });

  test("Persist Before Send: an acknowledgement for entries that differ from the leader's", () => {
    const ack: Message = { type: "append-resp", from: 2, to: 1, term: 2, index: 2, reject: false, rejectHint: 0, hintTerm: 0 };
    const c = run([
      { kind: "persist", node: 1, entries: [e(1, 1), e(2, 2)], hardState: hs(2, 1, 1) },
      { kind: "role", node: 1, term: 2, role: "leader" },
      { kind: "persist", node: 2, entries: [e(1, 1), e(2, 3)], hardState: hs(3, 0, 1) },
      { kind: "send", node: 2, msg: ack },
    ]);
    expect(c.violations.map((v) => v.detail)).toEqual([
      "node 2 acknowledged index 2 to the leader of term 2 but holds different entries",
    ]);
  });
});
