// The keyspace itself: expiry visibility, the bounded sweep, snapshots, and SCAN's guarantee
// under concurrent mutation.
import { describe, expect, test } from "bun:test";
import { Db, SWEEP_SAMPLES_PER_KEY, type DbEntry, type ScanOptions } from "../../src/kv/db.ts";
import { rng, T0 } from "./helpers.ts";

const ALL: ScanOptions = { count: 10, match: null, type: null };

describe("expiry visibility", () => {
  test("a key is absent from the moment its expiry is <= nowMs; reads do not mutate", () => {
    const db = new Db();
    db.setWithExpire("k", "v", T0 + 100, T0);
    expect(db.get("k", T0 + 99)).toBe("v");
    expect(db.has("k", T0 + 99)).toBe(true);
    expect(db.get("k", T0 + 100)).toBeUndefined();
    expect(db.has("k", T0 + 100)).toBe(false);
    expect(db.keys("*", T0 + 100)).toEqual([]);
    expect(db.dbsize()).toBe(1);
    expect(db.expiresCount()).toBe(1);
    // A write path reclaims it.
    expect(db.getForWrite("k", T0 + 100)).toBeUndefined();
    expect(db.dbsize()).toBe(0);
    expect(db.expiresCount()).toBe(0);
  });

  test("setWithExpire/setExpire with a time already due delete the key", () => {
    const db = new Db();
    db.set("k", "v");
    db.setWithExpire("k", "w", T0, T0);
    expect(db.dbsize()).toBe(0);
    db.set("k", "v");
    expect(db.setExpire("k", T0 - 1, T0)).toBe(true);
    expect(db.dbsize()).toBe(0);
    expect(db.setExpire("k", T0 + 1, T0)).toBe(false);
  });

  test("deleteIfExpired only deletes keys expired at the given time", () => {
    const db = new Db();
    db.setWithExpire("a", "1", T0 + 10, T0);
    db.set("b", "2");
    expect(db.deleteIfExpired("a", T0 + 9)).toBe(false);
    expect(db.deleteIfExpired("b", T0 + 100)).toBe(false);
    expect(db.deleteIfExpired("a", T0 + 10)).toBe(true);
    expect(db.dbsize()).toBe(1);
  });
});

describe("sweepExpired", () => {
  test("deletes at most maxKeys per call and never keys without a TTL", () => {
    const db = new Db();
    for (let i = 0; i < 1000; i++) db.setWithExpire(`e${i}`, "v", T0 + 1, T0);
    for (let i = 0; i < 1000; i++) db.set(`p${i}`, "v");
    const now = T0 + 1;
    expect(db.sweepExpired(now, 100)).toBe(100);
    expect(db.dbsize()).toBe(1900);
    let calls = 1;
    while (db.sweepExpired(now, 100) > 0) calls++;
    expect(calls).toBe(10);
    expect(db.dbsize()).toBe(1000);
    expect(db.expiresCount()).toBe(0);
    expect(db.keys("p*", now).length).toBe(1000);
    expect(db.sweepExpired(now, 100)).toBe(0);
  });

  test("looks at a bounded sample per call and resumes where it stopped", () => {
    const db = new Db();
    // 10,000 live TTL keys, then one expired key at the end of the TTL table.
    for (let i = 0; i < 10_000; i++) db.setWithExpire(`live${i}`, "v", T0 + 1_000_000, T0);
    db.setWithExpire("dead", "v", T0 + 5, T0);
    const now = T0 + 10;
    const perCall = 10 * SWEEP_SAMPLES_PER_KEY;
    const callsToReach = Math.ceil(10_001 / perCall);
    let calls = 0;
    let deleted = 0;
    while (deleted === 0) {
      deleted = db.sweepExpired(now, 10);
      calls++;
      expect(calls).toBeLessThanOrEqual(callsToReach);
    }
    // It needed exactly as many calls as sampling 40 entries per call takes to reach the end:
    // no call scanned the whole table.
    expect(calls).toBe(callsToReach);
    expect(db.get("dead", now)).toBeUndefined();
    expect(db.dbsize()).toBe(10_000);
  });

  test("wraps around to keys added before the resume point", () => {
    const db = new Db();
    for (let i = 0; i < 8; i++) db.setWithExpire(`k${i}`, "v", T0 + 1_000, T0);
    expect(db.sweepExpired(T0, 1)).toBe(0); // sweep position now past the first 4 entries
    db.setExpire("k0", T0 + 1, T0);
    expect(db.sweepExpired(T0 + 1, 1)).toBe(0); // k4..k7
    expect(db.sweepExpired(T0 + 1, 1)).toBe(1); // wrapped: k0
    expect(db.has("k0", T0)).toBe(false);
  });

  test("is deterministic: the same calls give the same state", () => {
    const run = () => {
      const db = new Db();
      const r = rng(99);
      for (let step = 0; step < 5000; step++) {
        const now = T0 + step;
        const key = `k${Math.floor(r() * 300)}`;
        const x = r();
        if (x < 0.5) db.setWithExpire(key, String(step), now + 1 + Math.floor(r() * 200), now);
        else if (x < 0.7) db.set(key, String(step));
        else if (x < 0.8) db.delete(key);
        else db.sweepExpired(now, 1 + Math.floor(r() * 5));
      }
      return [...db.entries()];
    };
    const a = run();
    expect(a.length).toBeGreaterThan(50);
    expect(run()).toEqual(a);
  });
});

describe("snapshots", () => {
  test("entries() and restore() round-trip values and expiry, including not yet reclaimed keys", () => {
    const db = new Db();
    let all = "";
    for (let i = 0; i < 256; i++) all += String.fromCharCode(i);
    db.rev = 5;
    db.set("plain", "1");
    db.rev = 6;
    db.setWithExpire("ttl", "2", T0 + 500, T0);
    db.setWithExpire("due", "3", T0 + 1, T0);
    db.rev = 9;
    db.set(all, all);
    const snap: DbEntry[] = [...db.entries()];
    expect(snap).toEqual([
      ["plain", "1", undefined, 5],
      ["ttl", "2", T0 + 500, 6],
      ["due", "3", T0 + 1, 6],
      [all, all, undefined, 9],
    ]);
    const copy = new Db();
    copy.set("stale", "x");
    copy.restore(snap);
    expect([...copy.entries()]).toEqual(snap);
    expect(copy.get("stale", T0)).toBeUndefined();
    expect(copy.get("due", T0 + 1)).toBeUndefined();
    expect(copy.get("ttl", T0 + 499)).toBe("2");
    expect(copy.expireAt("ttl")).toBe(T0 + 500);
    // load() over an existing key replaces its TTL too.
    copy.load("ttl", "9", undefined);
    expect(copy.expireAt("ttl")).toBeUndefined();
  });
});

/** Runs a scan to completion, mutating between calls with `between`; returns every key returned. */
function scanAll(db: Db, opts: ScanOptions, nowMs: number, between: (step: number) => void = () => {}): string[] {
  const seen: string[] = [];
  let cursor = "0";
  let step = 0;
  do {
    cursor = db.scan(cursor, opts, nowMs, seen);
    between(step++);
    expect(step).toBeLessThan(100_000);
  } while (cursor !== "0");
  return seen;
}

describe("SCAN", () => {
  test("without mutation returns every key exactly once, for any COUNT", () => {
    const db = new Db();
    for (let i = 0; i < 1000; i++) db.set(`k${i}`, "v");
    for (const count of [1, 7, 10, 999, 1000, 1001, 1_000_000]) {
      const seen = scanAll(db, { count, match: null, type: null }, T0);
      expect(seen.length).toBe(1000);
      expect(new Set(seen).size).toBe(1000);
    }
    expect(db.openCursors()).toBe(0);
  });

  test("returns cursor 0 on the call that reaches the end", () => {
    const db = new Db();
    for (let i = 0; i < 10; i++) db.set(`k${i}`, "v");
    const found: string[] = [];
    expect(db.scan("0", { count: 10, match: null, type: null }, T0, found)).toBe("0");
    expect(found.length).toBe(10);
    const first: string[] = [];
    const c = db.scan("0", { count: 9, match: null, type: null }, T0, first);
    expect(c).not.toBe("0");
    expect(db.scan(c, { count: 9, match: null, type: null }, T0, first)).toBe("0");
    expect(first.length).toBe(10);
  });

  test("every key present for the whole iteration is returned, under random concurrent mutation", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const r = rng(seed);
      const db = new Db();
      const n = 200 + Math.floor(r() * 300);
      for (let i = 0; i < n; i++) db.set(`k${i}`, "v");
      const deletedEver = new Set<string>();
      let next = n;
      const count = 1 + Math.floor(r() * 20);
      let calls = 0;
      const seen = new Set(
        scanAll(db, { count, match: null, type: null }, T0, () => {
          calls++;
          // Between calls: inserts, deletes, overwrites, re-inserts, TTL changes.
          for (let j = 0; j < 5; j++) {
            const x = r();
            const key = `k${Math.floor(r() * next)}`;
            if (x < 0.3) db.set(`k${next++}`, "new");
            else if (x < 0.5) {
              if (db.delete(key)) deletedEver.add(key);
            } else if (x < 0.7) db.set(key, "overwrite");
            else if (x < 0.8) db.setWithExpire(key, "ttl", T0 + 1_000_000, T0);
            else if (x < 0.9) {
              if (db.delete(key)) deletedEver.add(key);
              db.set(key, "again");
            } else db.sweepExpired(T0, 3);
          }
        }),
      );
      for (let i = 0; i < n; i++) {
        const k = `k${i}`;
        if (!deletedEver.has(k)) expect(seen.has(k)).toBe(true);
      }
      // Writers add keys faster than the scan reads them (count may be 1), yet it ends:
      // it takes no more entries than there were keys at its start.
      expect(calls).toBeLessThanOrEqual(Math.ceil(n / count));
    }
  });

  test("expired keys are skipped; MATCH and TYPE filter", () => {
    const db = new Db();
    db.set("a:1", "v");
    db.setWithExpire("a:2", "v", T0 + 5, T0);
    db.set("b:1", "v");
    expect(scanAll(db, ALL, T0 + 4)).toEqual(["a:1", "a:2", "b:1"]);
    expect(scanAll(db, ALL, T0 + 5)).toEqual(["a:1", "b:1"]);
    expect(scanAll(db, { count: 1, match: "a:*", type: null }, T0)).toEqual(["a:1", "a:2"]);
    expect(scanAll(db, { count: 1, match: null, type: "string" }, T0)).toEqual(["a:1", "a:2", "b:1"]);
    expect(scanAll(db, { count: 1, match: null, type: "hash" }, T0)).toEqual([]);
  });

  test("cursors are single use: reusing one restarts, so a retried call cannot skip keys", () => {
    const db = new Db();
    for (let i = 0; i < 30; i++) db.set(`k${i}`, "v");
    const opts = { count: 10, match: null, type: null };
    const first: string[] = [];
    const c1 = db.scan("0", opts, T0, first);
    const lost: string[] = [];
    const c2 = db.scan(c1, opts, T0, lost); // reply lost; the client retries with c1
    expect(lost).toEqual(Array.from({ length: 10 }, (_, i) => `k${10 + i}`));
    const retry: string[] = [];
    const c3 = db.scan(c1, opts, T0, retry);
    expect(retry).toEqual(first); // restarted from the beginning
    expect(c3).not.toBe(c2);
    // The unused c2 still continues its own iteration.
    const rest: string[] = [];
    expect(db.scan(c2, opts, T0, rest)).toBe("0");
    expect(rest).toEqual(Array.from({ length: 10 }, (_, i) => `k${20 + i}`));
  });

  test("open cursors are bounded; an evicted cursor restarts", () => {
    const db = new Db({ scanCursorsMax: 4, scanCursorBase: 1000 });
    for (let i = 0; i < 30; i++) db.set(`k${i}`, "v");
    const opts = { count: 5, match: null, type: null };
    const cursors: string[] = [];
    for (let i = 0; i < 6; i++) cursors.push(db.scan("0", opts, T0, []));
    expect(cursors).toEqual(["1000", "1001", "1002", "1003", "1004", "1005"]);
    expect(db.openCursors()).toBe(4);
    const evicted: string[] = [];
    db.scan("1000", opts, T0, evicted);
    expect(evicted).toEqual(["k0", "k1", "k2", "k3", "k4"]);
    const kept: string[] = [];
    db.scan("1005", opts, T0, kept);
    expect(kept).toEqual(["k5", "k6", "k7", "k8", "k9"]);
    expect(db.openCursors()).toBe(4);
  });

  test("a scan survives FLUSHALL and restore: it goes on with the keys added afterwards", () => {
    const db = new Db();
    for (let i = 0; i < 10; i++) db.set(`old${i}`, "v");
    const opts = { count: 3, match: null, type: null };
    const seen: string[] = [];
    const c = db.scan("0", opts, T0, seen);
    db.flush();
    db.set("new1", "v");
    db.set("new2", "v");
    let cursor = c;
    while (cursor !== "0") cursor = db.scan(cursor, opts, T0, seen);
    expect(seen).toEqual(["old0", "old1", "old2", "new1", "new2"]);

    for (let i = 0; i < 5; i++) db.set(`x${i}`, "v");
    const seen2: string[] = [];
    const c2 = db.scan("0", { count: 1, match: null, type: null }, T0, seen2);
    db.restore([["r1", "v", undefined], ["r2", "v", T0 + 10]]);
    cursor = c2;
    while (cursor !== "0") cursor = db.scan(cursor, opts, T0, seen2);
    expect(seen2).toEqual(["new1", "r1", "r2"]);
  });
});

describe("values restored by reference (loadLazy)", () => {
  test("a flush during the load keeps the source: refs stored after it resolve; it goes once the load ends with none held", () => {
    const stored = ["v0", "v1", "v2"];
    const db = new Db();
    db.loadLazy({ value: (ref) => stored[ref]! });
    db.load("a", 0, undefined);
    db.flush(); // a replayed FLUSHALL
    db.setRef("x", 1); // a replayed plain SET after it
    db.endLazyLoad();
    expect(db.get("x", T0)).toBe("v1");
    expect(db.get("a", T0)).toBeUndefined();
    expect(db.hasLazyValues()).toBe(true);

    const empty = new Db();
    empty.loadLazy({ value: (ref) => stored[ref]! });
    empty.setRef("x", 2);
    empty.flush();
    empty.set("y", "s");
    empty.endLazyLoad();
    expect(empty.hasLazyValues()).toBe(false);
    expect(empty.lazyRefCount()).toBe(0);
    expect(() => empty.setRef("z", 0)).toThrow("outside a lazy load");
  });
});
