// Unit tests for the pieces under the protocol: quorum math, in-flight window, progress, storage, log, PRNG.
import { describe, expect, test } from "bun:test";
import { RaftLog } from "../../src/raft/log.ts";
import { Inflights, Progress } from "../../src/raft/progress.ts";
import { committedIndex, quorumSize, voteResult } from "../../src/raft/quorum.ts";
import { Rand } from "../../src/raft/rand.ts";
import { MemoryStorage } from "../../src/raft/storage.ts";
import { decodeConfChange, encodeConfChange, type Entry } from "../../src/raft/types.ts";

const ent = (index: number, term: number): Entry => ({ index, term, type: "normal", data: new Uint8Array([index & 255]) });

describe("quorum", () => {
  test("majority sizes", () => {
    expect([1, 2, 3, 4, 5, 6, 7].map(quorumSize)).toEqual([1, 2, 2, 3, 3, 4, 4]);
  });

  test("committed index is the largest index held by a majority", () => {
    const m = new Map([
      [1, 9],
      [2, 5],
      [3, 7],
      [4, 1],
      [5, 6],
    ]);
    expect(committedIndex([1, 2, 3, 4, 5], (id) => m.get(id) ?? 0)).toBe(6);
    expect(committedIndex([1, 2, 3], (id) => m.get(id) ?? 0)).toBe(7);
    expect(committedIndex([4], (id) => m.get(id) ?? 0)).toBe(1);
    expect(committedIndex([], () => 0)).toBe(0);
  });

  test("vote results: won, lost, pending", () => {
    const votes = (xs: [number, boolean][]) => new Map(xs);
    expect(voteResult([1, 2, 3], votes([[1, true]]))).toBe("pending");
    expect(voteResult([1, 2, 3], votes([[1, true], [2, true]]))).toBe("won");
    expect(voteResult([1, 2, 3], votes([[2, false], [3, false]]))).toBe("lost");
    expect(voteResult([1, 2, 3, 4], votes([[1, true], [2, true], [3, false]]))).toBe("pending");
    expect(voteResult([1, 2, 3, 4], votes([[1, true], [2, false], [3, false]]))).toBe("lost");
  });
});

describe("flow control", () => {
  test("inflights: bounded ring, freed by acknowledgement", () => {
    const f = new Inflights(3);
    f.add(10);
    f.add(20);
    f.add(30);
    expect(f.full()).toBe(true);
    expect(() => f.add(40)).toThrow(/overflow/);
    f.freeLE(20);
    expect(f.length).toBe(1);
    f.add(40);
    f.add(50);
    f.freeFirstOne();
    expect(f.length).toBe(2);
    f.freeLE(100);
    expect(f.length).toBe(0);
  });

  test("progress: probe pauses after a send, replicate pauses when the window is full, snapshot always pauses", () => {
    const p = new Progress(5, 2, false);
    expect(p.isPaused()).toBe(false);
    p.probeSent = true;
    expect(p.isPaused()).toBe(true);
    expect(p.maybeUpdate(4)).toBe(true);
    expect(p.isPaused()).toBe(false);
    p.becomeReplicate();
    p.inflights.add(6);
    p.inflights.add(7);
    expect(p.isPaused()).toBe(true);
    p.becomeSnapshot(100);
    expect(p.isPaused()).toBe(true);
    p.becomeProbe();
    expect(p.next).toBe(101);
  });

  test("progress: stale rejections are ignored; fresh ones move next back to the hint", () => {
    const p = new Progress(11, 4, false);
    expect(p.maybeDecrTo(5, 3)).toBe(false); // not the probe we sent (next-1 = 10)
    expect(p.maybeDecrTo(10, 3)).toBe(true);
    expect(p.next).toBe(4);
    p.match = 6;
    p.becomeReplicate();
    expect(p.maybeDecrTo(5, 0)).toBe(false); // at or below match: stale
    expect(p.maybeDecrTo(9, 0)).toBe(true);
    expect(p.next).toBe(7);
  });
});

describe("storage and log", () => {
  test("MemoryStorage: append truncates a conflicting suffix; compaction keeps the snapshot term", () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1), ent(2, 1), ent(3, 1)]);
    s.append([ent(2, 2)]);
    expect(s.lastIndex()).toBe(2);
    expect(s.term(2)).toBe(2);
    s.append([ent(3, 2), ent(4, 2)]);
    s.createSnapshot(3, { voters: [1], learners: [] }, new Uint8Array([7]));
    expect(s.firstIndex()).toBe(4);
    expect(s.term(3)).toBe(2);
    expect(s.term(2)).toBeUndefined();
    expect(s.entries(4, 5, 1e9).map((e) => e.index)).toEqual([4]);
    expect(() => s.entries(3, 5, 1e9)).toThrow();
    expect(() => s.append([ent(9, 2)])).toThrow(/gap/);
  });

  test("MemoryStorage: entries are cut at the byte budget but always at least one", () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1), ent(2, 1), ent(3, 1)]);
    expect(s.entries(1, 4, 0).length).toBe(1);
    expect(s.entries(1, 4, 50).length).toBe(2);
  });

  test("RaftLog: unstable entries become stable only if the term still matches", () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1)]);
    const log = new RaftLog(s, 1 << 20);
    log.append([ent(2, 1), ent(3, 1)]);
    expect(log.unstableEntries().map((e) => e.index)).toEqual([2, 3]);
    log.append([ent(3, 2)]); // a new leader rewrote 3 before the old Ready was persisted
    log.stableTo(3, 1);
    expect(log.unstableEntries().map((e) => e.index)).toEqual([2, 3]);
    log.stableTo(2, 1);
    expect(log.unstableEntries().map((e) => `${e.index}/${e.term}`)).toEqual(["3/2"]);
    expect(log.lastStableIndex()).toBe(2);
  });

  test("RaftLog: findConflictByTerm walks back to the last index whose term is at most the given term", () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1), ent(2, 1), ent(3, 3), ent(4, 3), ent(5, 5)]);
    const log = new RaftLog(s, 1 << 20);
    expect(log.findConflictByTerm(5, 4)).toBe(4);
    expect(log.findConflictByTerm(5, 2)).toBe(2);
    expect(log.findConflictByTerm(9, 5)).toBe(5);
    expect(log.findConflictByTerm(5, 0)).toBe(0);
  });

  test("RaftLog: commit never decreases and never passes the last index", () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1), ent(2, 1)]);
    const log = new RaftLog(s, 1 << 20);
    log.commitTo(2);
    log.commitTo(1);
    expect(log.committed).toBe(2);
    expect(() => log.commitTo(3)).toThrow(/commit 3 past last index 2/);
  });
});

describe("codec and randomness", () => {
  test("conf changes round-trip through their entry payload", () => {
    for (const cc of [
      { type: "add-voter", node: 1 },
      { type: "add-learner", node: 70000 },
      { type: "remove-node", node: 4294967295 },
    ] as const) {
      expect(decodeConfChange(encodeConfChange(cc))).toEqual(cc);
    }
    expect(() => decodeConfChange(new Uint8Array([9, 0, 0, 0, 1]))).toThrow();
    // A context (a new member's addresses) travels after the fixed part; 5 bytes alone mean none.
    const context = new TextEncoder().encode('{"addr":"127.0.0.1:7004"}');
    const back = decodeConfChange(encodeConfChange({ type: "add-learner", node: 4, context }));
    expect(back.type).toBe("add-learner");
    expect(back.node).toBe(4);
    expect(new TextDecoder().decode(back.context)).toBe('{"addr":"127.0.0.1:7004"}');
    expect(() => encodeConfChange({ type: "add-learner", node: 4, context: new Uint8Array(4097) })).toThrow(RangeError);
    expect(() => decodeConfChange(new Uint8Array([2, 0, 0]))).toThrow();
  });

  test("Rand is deterministic per seed and roughly uniform", () => {
    const a = new Rand(7);
    const b = new Rand(7);
    const xs = Array.from({ length: 1000 }, () => a.int(10));
    expect(Array.from({ length: 1000 }, () => b.int(10))).toEqual(xs);
    const counts = new Array(10).fill(0);
    for (const x of xs) counts[x]++;
    for (const c of counts) expect(c).toBeGreaterThan(60);
    expect(new Rand(8).nextU32()).not.toBe(new Rand(7).nextU32());
  });
});
