// The RaftStorage twin: writes become durable after their delay, in order, and crashes keep what a disk would.
import { describe, expect, test } from "bun:test";
import { MemoryRaftStorage, type PersistRequest } from "../../src/node/memory-storage.ts";
import { MemoryStorage } from "../../src/raft/storage.ts";
import type { Entry } from "../../src/raft/types.ts";

const ent = (index: number, term = 1): Entry => ({ index, term, type: "normal", data: new Uint8Array([index]) });
const req = (entries: Entry[], term = 1, vote = 0, commit = 0): PersistRequest => ({ entries, hardState: { term, vote, commit }, snapshot: undefined });

describe("MemoryRaftStorage", () => {
  test("a delayed write is durable (and resolves) only once its steps have passed", async () => {
    const s = new MemoryRaftStorage(new MemoryStorage(), { persistSteps: () => 3 });
    let done = false;
    const p = s.persist(req([ent(1), ent(2)], 2, 1)).then(() => (done = true));
    s.step();
    s.step();
    await Promise.resolve();
    expect(done).toBe(false);
    expect(s.lastIndex()).toBe(0);
    s.step();
    await p;
    expect(s.lastIndex()).toBe(2);
    expect(s.disk.getHardState()).toEqual({ term: 2, vote: 1, commit: 0 });
  });

  test("several writes may be in flight: each becomes durable in the order issued, never before an earlier one", async () => {
    const delays = [5, 1, 3];
    const s = new MemoryRaftStorage(new MemoryStorage(), { persistSteps: () => delays.shift()! });
    const order: number[] = [];
    const ps = [s.persist(req([ent(1)])).then(() => order.push(1)), s.persist(req([ent(2)])).then(() => order.push(2)), s.persist(req([ent(3)])).then(() => order.push(3))];
    for (let i = 0; i < 4; i++) s.step();
    await Promise.resolve();
    // The second write's own delay (1 step) has passed, but the first (5 steps) is not durable yet.
    expect(order).toEqual([]);
    expect(s.lastIndex()).toBe(0);
    expect(s.writing).toBe(true);
    s.step();
    await Promise.all(ps);
    expect(order).toEqual([1, 2, 3]);
    expect(s.lastIndex()).toBe(3);
    expect(s.writing).toBe(false);
  });

  test("a crash with several writes in flight loses all of them but a kept prefix of the oldest", () => {
    const s = new MemoryRaftStorage(new MemoryStorage(), { persistSteps: () => 3 });
    void s.persist(req([ent(1), ent(2)], 1, 1));
    void s.persist(req([ent(3)], 1, 1));
    s.step();
    s.crash((choices) => choices - 2); // of [1, 2, hard state]: entries 1 and 2
    const next = s.reopen();
    expect(next.lastIndex()).toBe(2);
    expect(next.initialState().hardState).toEqual({ term: 0, vote: 0, commit: 0 });
  });

  test("a crash loses the write in flight whole; the next process sees the earlier writes", async () => {
    const s = new MemoryRaftStorage(new MemoryStorage(), { persistSteps: () => 2 });
    const first = s.persist(req([ent(1)], 1, 1));
    s.step();
    s.step();
    await first;
    let resolved = false;
    void s.persist(req([ent(2), ent(3)], 2, 2)).then(() => (resolved = true));
    s.step();
    s.crash();
    s.step();
    s.step();
    await Promise.resolve();
    expect(resolved).toBe(false);
    const next = s.reopen();
    expect(next.lastIndex()).toBe(1);
    expect(next.initialState().hardState).toEqual({ term: 1, vote: 1, commit: 0 });
  });

  test("a torn crash keeps a prefix of the entries and never the hard state", () => {
    let crashed = "";
    const durable: PersistRequest[] = [];
    const s = new MemoryRaftStorage(new MemoryStorage(), { onCrash: (how) => (crashed = how), onDurable: (p) => durable.push(p) });
    s.armTornCrash((steps) => {
      expect(steps).toBe(4); // three entries and the hard state
      return 2;
    });
    let resolved = false;
    void s.persist(req([ent(1), ent(2), ent(3)], 3, 3)).then(() => (resolved = true));
    expect(crashed).toBe("torn");
    expect(resolved).toBe(false);
    expect(s.lastIndex()).toBe(2);
    expect(s.disk.getHardState().term).toBe(0);
    expect(durable.map((p) => [p.entries.length, p.hardState])).toEqual([[2, undefined]]);
  });

  test("a crash with a write in flight keeps a chosen prefix of it: none, part, or all (written, never known durable)", async () => {
    for (const keep of [0, 2, 4]) {
      const durable: PersistRequest[] = [];
      const s = new MemoryRaftStorage(new MemoryStorage(), { persistSteps: () => 5, onDurable: (p) => durable.push(p) });
      let resolved = false;
      void s.persist(req([ent(1), ent(2), ent(3)], 3, 3)).then(() => (resolved = true));
      s.step();
      let choices = 0;
      const lost = s.crash((n) => {
        choices = n;
        return keep;
      });
      expect(choices).toBe(5); // keep 0..4 of three entries and the hard state
      expect(lost?.entries.length).toBe(3);
      for (let i = 0; i < 6; i++) s.step();
      await Promise.resolve();
      expect(resolved).toBe(false);
      const next = s.reopen();
      expect(next.lastIndex()).toBe(Math.min(keep, 3));
      expect(next.initialState().hardState.term).toBe(keep === 4 ? 3 : 0);
      expect(durable.length).toBe(keep === 0 ? 0 : 1);
    }
  });

  test("a crash after a write keeps the write but never resolves it", async () => {
    let crashed = "";
    const s = new MemoryRaftStorage(new MemoryStorage(), { onCrash: (how) => (crashed = how) });
    s.armCrashAfterWrite(true);
    let resolved = false;
    void s.persist(req([ent(1)], 1, 1)).then(() => (resolved = true));
    await Promise.resolve();
    expect(crashed).toBe("after-write");
    expect(resolved).toBe(false);
    expect(s.reopen().lastIndex()).toBe(1);
  });

  test("compact needs the state machine's image at that index and drops the log up to it", async () => {
    const s = new MemoryRaftStorage(new MemoryStorage());
    await s.persist(req([ent(1), ent(2), ent(3)], 1, 0, 3));
    const meta = { index: 2, term: 1, confState: { voters: [1], learners: [] } };
    expect(() => s.compact(meta)).toThrow("without a saved image");
    s.saveImage(2, new Uint8Array([42]));
    await s.compact(meta);
    expect(s.firstIndex()).toBe(3);
    expect(s.snapshot().data).toEqual(new Uint8Array([42]));
    expect(s.snapshot().meta).toEqual(meta);
  });
});
