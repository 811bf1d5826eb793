// The leader's pending proposals by index behave as a Map of them would, in index order.
import { describe, expect, test } from "bun:test";
import { ProposalBook } from "../../src/node/proposal-book.ts";
import { Rand } from "../../src/raft/rand.ts";

describe("ProposalBook", () => {
  test("a seeded sequence of adds (growing indices, gaps) and deletes (mostly the oldest) matches a Map", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rand = new Rand(seed);
      const book = new ProposalBook<string>();
      const map = new Map<number, string>();
      let next = 1 + rand.int(100);
      for (let step = 0; step < 20_000; step++) {
        const r = rand.int(100);
        if (r < 50 || map.size === 0) {
          next += rand.chance(0.1) ? 1 + rand.int(5) : 1; // a gap: a no-op or another kind of entry
          book.set(next, `p${next}`);
          map.set(next, `p${next}`);
        } else if (r < 90) {
          const oldest = Math.min(...map.keys());
          expect(book.delete(oldest)).toBe(true);
          map.delete(oldest);
        } else {
          const keys = [...map.keys()];
          const k = keys[rand.int(keys.length)]!;
          expect(book.delete(k)).toBe(map.delete(k));
        }
        if (step % 997 === 0) {
          expect(book.size).toBe(map.size);
          expect([...book]).toEqual([...map].sort((a, b) => a[0] - b[0]));
          const probe = next - rand.int(50);
          expect(book.get(probe)).toBe(map.get(probe));
          expect(book.has(probe)).toBe(map.has(probe));
        }
      }
      expect([...book]).toEqual([...map].sort((a, b) => a[0] - b[0]));
      expect(book.delete(next + 1)).toBe(false);
    }
  });

  test("two proposals at one index, or one below the oldest pending, are runtime bugs", () => {
    const book = new ProposalBook<string>();
    book.set(10, "a");
    book.set(12, "b");
    expect(() => book.set(12, "c")).toThrow("two proposals at index 12");
    expect(() => book.set(9, "d")).toThrow("below the oldest pending one");
    book.set(11, "e"); // a gap filled later is fine
    expect([...book]).toEqual([[10, "a"], [11, "e"], [12, "b"]]);
    book.delete(10);
    book.delete(11);
    book.delete(12);
    expect(book.size).toBe(0);
    book.set(3, "f"); // empty: starts anew anywhere
    expect(book.get(3)).toBe("f");
  });
});
