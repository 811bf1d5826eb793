// Copy-on-write snapshots of the keyspace (Db.beginSnapshot): the chunks read while writes go
// on must equal, exactly and each key once, a copy taken when the snapshot began; the live
// keyspace must behave as if no snapshot were open; memory is bounded by the keys changed.
import { describe, expect, test } from "bun:test";
import { Db, type DbEntry, type DbSnapshot } from "../../src/kv/db.ts";
import { KvStateMachine } from "../../src/kv/fsm.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";
import { Kv, rng, T0 } from "./helpers.ts";

type Model = Map<string, [string, number | bigint | undefined]>;

/** A copy of a Db's entries (the oracle taken when a snapshot begins). */
function copyOf(db: Db): Model {
  const m: Model = new Map();
  for (const [k, v, at] of db.entries()) m.set(k, [v, at]);
  return m;
}

/** Reads a snapshot to its end in chunks of `size`; fails on a key seen twice. */
function drain(s: DbSnapshot, size = 3, between?: () => void): Model {
  const m: Model = new Map();
  for (let c = s.next(size); c !== null; c = s.next(size)) {
    expect(c.length).toBeLessThanOrEqual(size);
    for (const [k, v, at] of c) {
      expect(m.has(k)).toBe(false);
      m.set(k, [v, at]);
    }
    between?.();
  }
  return m;
}

const sorted = (m: Model) => [...m].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
const sortedEntries = (db: Db) => [...db.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

function filled(n: number, ttlEvery = 0): Db {
  const db = new Db();
  for (let i = 0; i < n; i++) {
    if (ttlEvery > 0 && i % ttlEvery === 0) db.setWithExpire(`k${i}`, `v${i}`, T0 + 1000 + i, T0);
    else db.set(`k${i}`, `v${i}`);
  }
  return db;
}

describe("randomized: snapshot output equals the copy at begin; live state equals a twin without snapshots", () => {
  // Even seeds start from a keyspace restored by reference (Db.loadLazy, as a restart from a
  // mapped snapshot file does); the twin holds the same values as strings.
  const SEEDS = 60;
  for (let seed = 1; seed <= SEEDS; seed++) {
    test(`seed ${seed}`, () => {
      const r = rng(seed);
      const ri = (n: number) => Math.floor(r() * n);
      const db = new Db();
      const twin = new Db(); // same calls, never snapshotted: the live-state oracle
      const kv = new Kv(db);
      const kvTwin = new Kv(twin);
      const nKeys = 20 + ri(300);
      const key = () => (r() < 0.9 ? `k${ri(nKeys)}` : `new${ri(nKeys * 4)}`);
      let now = T0;
      const both = <T>(f: (d: Db) => T, what: string): void => {
        const a = f(db);
        const b = f(twin);
        expect(a, `seed ${seed}: ${what} returned differently`).toEqual(b);
      };
      // Initial keyspace: some keys with a TTL, a few already expired (held, not reclaimed).
      const lazy = seed % 2 === 0;
      const stored: string[] = [];
      if (lazy) db.loadLazy({ value: (ref) => stored[ref]! });
      for (let i = 0; i < nKeys; i++) {
        const k = `k${i}`;
        const x = r();
        const at = now + ri(400) - 100;
        if (x >= 0.9) continue;
        if (lazy) {
          stored.push(`v${i}`);
          db.load(k, stored.length - 1, x < 0.6 ? undefined : at);
          twin.load(k, `v${i}`, x < 0.6 ? undefined : at);
        } else if (x < 0.6) both((d) => d.set(k, `v${i}`), "set");
        else both((d) => d.load(k, `v${i}`, at), "load");
      }
      if (lazy) db.endLazyLoad();
      expect(db.lazyRefCount()).toBe(lazy ? stored.length : 0);
      for (let round = 0; round < 3; round++) {
        const model = copyOf(db);
        const { snap, count } = (() => {
          const s = db.beginSnapshot();
          return { snap: s, count: s.entryCountAtStart };
        })();
        expect(count, `seed ${seed}`).toBe(model.size);
        const got: Model = new Map();
        const touched = new Set<string>();
        let abandoned = false;
        let done = false;
        const abandonAt = r() < 0.15 ? ri(3000) : -1;
        for (let step = 0; step < 4000 && !done; step++) {
          const ctx = `seed ${seed} round ${round} step ${step}`;
          const x = ri(100);
          if (x < 12) {
            const c = snap.next(1 + ri(r() < 0.5 ? 4 : 60));
            if (c === null) done = true;
            else
              for (const [k, v, at] of c) {
                expect(got.has(k), `${ctx}: ${k} emitted twice`).toBe(false);
                got.set(k, [v, at]);
              }
            continue;
          }
          if (step === abandonAt) {
            snap.close();
            snap.close(); // idempotent
            expect(snap.next(5), ctx).toBeNull();
            abandoned = done = true;
            break;
          }
          const k = key();
          touched.add(k);
          // Random arguments drawn once, before `both` runs the call on each Db.
          const at = now + ri(300) - 50;
          const maybeAt = r() < 0.5 ? undefined : at;
          if (x < 14) now += ri(60) - 10; // time moves (a lagging leader's may go back: harmless here)
          else if (x < 30) both((d) => d.set(k, `s${step}`), `${ctx} set`);
          else if (x < 40) both((d) => d.delete(k), `${ctx} delete`);
          else if (x < 46) both((d) => d.setWithExpire(k, `e${step}`, at, now), `${ctx} setWithExpire`);
          else if (x < 52) both((d) => d.setExpire(k, at, now), `${ctx} setExpire`);
          else if (x < 56) both((d) => d.removeExpire(k), `${ctx} removeExpire`);
          else if (x < 60) both((d) => d.getForWrite(k, now), `${ctx} getForWrite`);
          else if (x < 64) both((d) => (d.getForWrite(k, now) === undefined ? d.setKeepTtl(k, "1") : d.setKeepTtl(k, `kt${step}`)), `${ctx} setKeepTtl`);
          else if (x < 67) both((d) => d.deleteIfExpired(k, now), `${ctx} deleteIfExpired`);
          else if (x < 70) both((d) => d.load(k, `l${step}`, maybeAt), `${ctx} load`);
          else if (x < 73) {
            // The sweep's order differs once a key was deleted and set again (the snapshotted
            // Db keeps it in place), so which expired keys one bounded call reclaims may
            // differ (sweeps are local, not replicated). Then sweep both fully, so the held
            // expired keys (visible to DBSIZE and DEL's count) agree again.
            for (const [kk, , at] of db.entries()) if (at !== undefined && at <= now) touched.add(kk);
            db.sweepExpired(now, 1 + ri(20));
            db.sweepExpired(now, 1 << 20);
            twin.sweepExpired(now, 1 << 20);
            expect(db.dbsize(), `${ctx} dbsize after sweeps`).toBe(twin.dbsize());
          } else if (x < 74 && r() < 0.3) {
            both((d) => d.flush(), `${ctx} flush`);
          } else {
            // Commands through the command table, replies compared.
            const cmds: string[][] = [
              ["SET", k, `c${step}`, "PX", String(1 + ri(200))],
              ["INCR", k],
              ["APPEND", k, "x"],
              ["DEL", k, key()],
              ["RENAME", k, key()],
              ["GETEX", k, "PERSIST"],
              ["GETDEL", k],
              ["PEXPIRE", k, String(ri(200) - 20)],
              ["EXISTS", k, key()],
              ["TTL", k],
              ["DBSIZE"],
              ["SETRANGE", k, String(ri(5)), "zz"],
            ];
            const argv = cmds[ri(cmds.length)]!;
            for (const a of argv.slice(1)) if (a.startsWith("k") || a.startsWith("new")) touched.add(a);
            kv.nowMs = kvTwin.nowMs = now;
            expect(kv.run(...argv), `${ctx} ${argv.join(" ")}`).toBe(kvTwin.run(...argv));
          }
          if (step % 97 === 0) {
            db.assertInvariants();
            expect(db.dbsize(), `${ctx} dbsize`).toBe(twin.dbsize());
            expect(db.expiresCount(), `${ctx} expiresCount`).toBe(twin.expiresCount());
            expect(db.keys("*", now).sort(), `${ctx} keys`).toEqual(twin.keys("*", now).sort());
          }
          expect(snap.preimageCount, `${ctx}: preimages ${snap.preimageCount} > keys touched ${touched.size}`).toBeLessThanOrEqual(touched.size);
        }
        const ctx = `seed ${seed} round ${round}`;
        if (!abandoned) {
          // Finish reading, with writes still going on between chunks.
          for (let c = snap.next(1 + ri(50)); c !== null; c = snap.next(1 + ri(50))) {
            for (const [k, v, at] of c) {
              expect(got.has(k), `${ctx}: ${k} emitted twice`).toBe(false);
              got.set(k, [v, at]);
            }
            db.delete(key());
            db.set(key(), "late");
          }
          expect(sorted(got), `${ctx}: snapshot output differs from the copy at begin`).toEqual(sorted(model));
          expect(snap.emittedCount, ctx).toBe(count);
          // A complete snapshot leaves no value held by reference, and the source goes.
          expect(db.lazyRefCount(), ctx).toBe(0);
          expect(db.hasLazyValues(), ctx).toBe(false);
        }
        expect(snap.open, ctx).toBe(false);
        expect(snap.preimageCount, `${ctx}: preimages held after close`).toBe(0);
        expect(db.snapshotOpen(), ctx).toBe(false);
        // The finishing loop above wrote different random keys to db and twin: resync the twin.
        twin.restore(db.entries());
        db.assertInvariants();
        expect(db.dbsize(), ctx).toBe(twin.dbsize());
        expect(db.expiresCount(), ctx).toBe(twin.expiresCount());
        expect(db.tombstoneCount(), `${ctx}: tombstones left after close`).toBe(0); // assertInvariants counted them
        expect(sortedEntries(db), ctx).toEqual(sortedEntries(twin));
      }
    });
  }
});

describe("targeted cases", () => {
  test("keys added after begin never appear; unchanged keys come with their value and expiry", () => {
    const db = filled(50, 3);
    const model = copyOf(db);
    const s = db.beginSnapshot();
    expect(s.entryCountAtStart).toBe(50);
    for (let i = 0; i < 100; i++) db.set(`added${i}`, "x");
    const got = drain(s, 7, () => db.set(`more${db.dbsize()}`, "y"));
    expect(sorted(got)).toEqual(sorted(model));
    expect(db.dbsize()).toBe(50 + 100 + 8);
  });

  test("a key deleted before the iterator reaches it comes out with its old value; it is gone for reads", () => {
    const db = filled(10, 2);
    const model = copyOf(db);
    const s = db.beginSnapshot();
    expect(db.delete("k9")).toBe(true);
    expect(db.delete("k9")).toBe(false);
    expect(db.delete("k8")).toBe(true);
    expect(db.get("k9", T0)).toBeUndefined();
    expect(db.get("k8", T0)).toBeUndefined();
    expect(db.has("k8", T0)).toBe(false);
    expect(db.dbsize()).toBe(8);
    expect(db.expiresCount()).toBe(4);
    expect(db.keys("*", T0)).not.toContain("k9");
    db.assertInvariants();
    expect(db.tombstoneCount()).toBe(2);
    const got: Model = new Map();
    for (const [k, v, at] of s.next(9)!) got.set(k, [v, at]);
    expect(s.open).toBe(true);
    expect(db.tombstoneCount()).toBe(1); // k8's, passed: reclaimed already
    db.assertInvariants();
    for (const [k, e] of drain(s)) got.set(k, e);
    expect(sorted(got)).toEqual(sorted(model));
    expect(db.tombstoneCount()).toBe(0);
    expect(db.dbsize()).toBe(8);
    expect([...db.entries()].map((e) => e[0])).not.toContain("k9");
    db.assertInvariants();
  });

  test("a key emitted, then deleted and set again, comes out once (with the value at begin)", () => {
    const db = filled(10);
    const model = copyOf(db);
    const s = db.beginSnapshot();
    const first = s.next(3)!;
    expect(first.map((e) => e[0])).toEqual(["k0", "k1", "k2"]);
    // k0 was read unchanged; its first change comes after: a preimage is saved but must not be emitted again.
    db.delete("k0");
    db.set("k0", "new0");
    db.set("k1", "new1");
    db.delete("k1");
    db.delete("k2");
    db.set("k2", "a");
    db.delete("k2");
    db.set("k2", "b");
    const rest = drain(s);
    for (const [k, v, at] of first) rest.set(k, [v, at]);
    expect(sorted(rest)).toEqual(sorted(model));
    expect(db.get("k0", T0)).toBe("new0");
    expect(db.get("k1", T0)).toBeUndefined();
    expect(db.get("k2", T0)).toBe("b");
    db.assertInvariants();
  });

  test("a key deleted and set again before it is reached comes out once, with the value at begin", () => {
    const db = filled(10);
    const model = copyOf(db);
    const s = db.beginSnapshot();
    for (let i = 0; i < 5; i++) {
      db.delete("k5");
      db.set("k5", `again${i}`);
    }
    db.setWithExpire("k6", "ttl", T0 + 50, T0);
    db.delete("k6");
    db.setKeepTtl("k6", "kept"); // a tombstone's TTL must not leak into the new key
    expect(db.expireAt("k6")).toBeUndefined();
    expect(db.get("k6", T0 + 10_000)).toBe("kept");
    expect(sorted(drain(s, 1))).toEqual(sorted(model));
    expect(db.get("k5", T0)).toBe("again4");
    db.assertInvariants();
  });

  test("a key added after begin, deleted and added again, never comes out", () => {
    const db = filled(5);
    const model = copyOf(db);
    const s = db.beginSnapshot();
    const head = s.next(2)!;
    for (let i = 0; i < 4; i++) {
      db.set("late", `x${i}`);
      const mid = s.next(1);
      if (mid !== null) for (const e of mid) head.push(e);
      db.delete("late");
    }
    db.set("late", "final");
    const got = drain(s);
    for (const [k, v, at] of head) got.set(k, [v, at]);
    expect(got.has("late")).toBe(false);
    expect(sorted(got)).toEqual(sorted(model));
    expect(db.get("late", T0)).toBe("final");
  });

  test("TTL changes during the snapshot: the expiry at begin comes out", () => {
    const db = filled(6, 2); // k0 k2 k4 have TTLs
    const model = copyOf(db);
    const s = db.beginSnapshot();
    expect(db.removeExpire("k0")).toBe(true);
    expect(db.setExpire("k1", T0 + 5000, T0)).toBe(true);
    expect(db.setExpire("k2", T0 + 9999, T0)).toBe(true);
    expect(db.setExpire("k3", T0 - 1, T0)).toBe(true); // due: deletes
    db.setWithExpire("k4", "gone", T0, T0); // due: deletes
    expect(db.has("k3", T0)).toBe(false);
    expect(db.has("k4", T0)).toBe(false);
    expect(db.removeExpire("k4")).toBe(false); // a tombstone has no TTL to remove
    expect(db.has("k4", T0)).toBe(false);
    expect(sorted(drain(s, 2))).toEqual(sorted(model));
    expect(db.expireAt("k0")).toBeUndefined();
    expect(db.expireAt("k1")).toBe(T0 + 5000);
    expect(db.dbsize()).toBe(4);
    db.assertInvariants();
  });

  test("keys expired at begin come out with their stored expiry, once, even if reclaimed meanwhile", () => {
    const db = new Db();
    db.load("dead1", "a", T0 - 10);
    db.load("dead2", "b", T0 - 5);
    db.load("dead3", "c", T0 - 1);
    db.set("live", "v");
    const model = copyOf(db);
    const s = db.beginSnapshot();
    expect(db.getForWrite("dead1", T0)).toBeUndefined(); // reclaims
    expect(db.deleteIfExpired("dead2", T0)).toBe(true);
    expect(db.deleteIfExpired("dead2", T0)).toBe(false); // already gone (a tombstone)
    expect(db.sweepExpired(T0, 100)).toBe(1); // only dead3; tombstones are not counted
    expect(db.sweepExpired(T0, 100)).toBe(0);
    expect(db.dbsize()).toBe(1);
    expect(db.expiresCount()).toBe(0);
    const got = drain(s);
    expect(sorted(got)).toEqual(sorted(model));
    expect(got.get("dead1")).toEqual(["a", T0 - 10]);
    expect(db.dbsize()).toBe(1);
    expect([...db.entries()]).toEqual([["live", "v", undefined, 0]]);
    db.assertInvariants();
  });

  test("flush during a snapshot is O(1): the snapshot keeps the old keys, new writes are not in it", () => {
    const db = filled(1000, 4);
    const model = copyOf(db);
    const s = db.beginSnapshot();
    const head = s.next(10)!;
    db.set("k500", "changed-before-flush");
    db.delete("k600");
    db.flush();
    expect(db.dbsize()).toBe(0);
    expect(db.expiresCount()).toBe(0);
    for (let i = 0; i < 50; i++) db.set(`k${i * 7}`, "after-flush");
    db.delete("k500");
    db.assertInvariants(); // no barrier any more: nothing refers to the old Maps
    expect(() => db.beginSnapshot()).toThrow(/already open/); // still open, though detached
    const got = drain(s, 64, () => db.set(`x${db.dbsize()}`, "y"));
    for (const [k, v, at] of head) got.set(k, [v, at]);
    expect(sorted(got)).toEqual(sorted(model));
    expect(db.get("k7", T0)).toBe("after-flush");
    // A second flush while the (detached) snapshot is still open, then a new snapshot after close.
    s.close();
    const s2 = db.beginSnapshot();
    const m2 = copyOf(db);
    db.flush();
    db.set("z", "1");
    expect(sorted(drain(s2))).toEqual(sorted(m2));
  });

  test("flush (FLUSHALL) and restore during a snapshot through the command table", () => {
    const db = filled(100, 3);
    const kv = new Kv(db);
    const model = copyOf(db);
    const s = db.beginSnapshot();
    kv.run("DEL", "k1", "k2");
    expect(kv.run("FLUSHALL")).toBe("+OK\r\n");
    expect(kv.run("DBSIZE")).toBe(":0\r\n");
    kv.run("SET", "k3", "x");
    db.restore([["r1", "a", undefined], ["k4", "b", T0 + 5]]);
    expect(db.dbsize()).toBe(2);
    expect(sorted(drain(s, 9))).toEqual(sorted(model));
  });

  test("one snapshot at a time; close is idempotent; next after the end returns null", () => {
    const db = filled(5);
    const s = db.beginSnapshot();
    expect(db.snapshotOpen()).toBe(true);
    expect(() => db.beginSnapshot()).toThrow(/already open/);
    expect(() => s.next(0)).toThrow();
    expect(s.next(100)!.length).toBe(5);
    expect(s.open).toBe(false); // closed itself with the last chunk
    expect(db.snapshotOpen()).toBe(false);
    expect(s.next(1)).toBeNull();
    s.close();
    s.close();
    const s2 = db.beginSnapshot();
    s2.close();
    s2.close();
    expect(s2.next(1)).toBeNull();
    const s3 = db.beginSnapshot(); // s2's close did not leave a barrier behind
    db.set("k0", "x");
    expect(s3.preimageCount).toBe(1);
    s3.close();
    expect(s3.preimageCount).toBe(0);
  });

  test("an empty keyspace gives no entries", () => {
    const db = new Db();
    const s = db.beginSnapshot();
    db.set("a", "1");
    expect(s.entryCountAtStart).toBe(0);
    expect(s.next(10)).toBeNull();
    expect(db.snapshotOpen()).toBe(false);
  });

  test("the snapshot ends after entryCountAtStart entries even while writers add keys faster than it reads", () => {
    const db = filled(200);
    const model = copyOf(db);
    const s = db.beginSnapshot();
    let n = 0;
    const got = drain(s, 1, () => {
      for (let i = 0; i < 20; i++) db.set(`flood${n++}`, "x");
    });
    expect(sorted(got)).toEqual(sorted(model));
    expect(n).toBe(200 * 20);
  });

  test("memory: preimages bounded by distinct keys changed, released at close; tombstones reclaimed at close", () => {
    const db = filled(10_000);
    const s = db.beginSnapshot();
    const model = copyOf(db); // taken after begin, before any change: same thing
    const head = s.next(100)!;
    for (let round = 0; round < 1000; round++) {
      for (let j = 0; j < 10; j++) {
        const k = `k${j * 997}`;
        if (round % 3 === 0) db.delete(k);
        else db.set(k, `r${round}`);
        db.setWithExpire(`fresh${j}`, "f", T0 + 10, T0);
      }
      expect(s.preimageCount).toBeLessThanOrEqual(20);
    }
    const got = drain(s, 500);
    for (const [k, v, at] of head) got.set(k, [v, at]);
    expect(sorted(got)).toEqual(sorted(model));
    expect(s.preimageCount).toBe(0);
    // After close the barrier is off: changes leave no trace in the closed snapshot.
    for (let i = 0; i < 100; i++) db.delete(`k${i}`);
    expect(s.preimageCount).toBe(0);
    expect(db.tombstoneCount()).toBe(0);
    db.assertInvariants();
    // k0..k99 and k997*j (deleted in the last round; k0 is both) are gone; fresh0..9 added.
    expect(db.dbsize()).toBe(10_000 - 99 - 10 + 10);
  });

  test("adding keys during a snapshot costs no preimage; deleting an added key leaves a tombstone until close", () => {
    const db = filled(1000);
    const model = copyOf(db);
    const s = db.beginSnapshot();
    s.next(10);
    for (let i = 0; i < 10_000; i++) db.set(`added${i}`, "x");
    expect(s.preimageCount).toBe(0);
    db.delete("added5");
    db.set("added6", "again");
    expect(s.preimageCount).toBe(2);
    expect(db.dbsize()).toBe(1000 + 9999);
    db.assertInvariants();
    const got = drain(s, 100);
    expect(got.size).toBe(990);
    for (const k of got.keys()) expect(model.has(k)).toBe(true);
    expect(db.dbsize()).toBe(1000 + 9999);
    expect(db.get("added6", T0)).toBe("again");
    db.assertInvariants();
  });

  test("reads during a snapshot see tombstones as missing everywhere (GET TTL EXISTS KEYS SCAN DBSIZE)", () => {
    const db = filled(20, 2);
    const kv = new Kv(db);
    const s = db.beginSnapshot();
    kv.run("DEL", "k4", "k5");
    expect(kv.run("GET", "k4")).toBe("$-1\r\n");
    expect(kv.run("TTL", "k4")).toBe(":-2\r\n");
    expect(kv.run("PERSIST", "k4")).toBe(":0\r\n");
    expect(kv.run("EXPIRE", "k4", "100")).toBe(":0\r\n");
    expect(kv.run("EXISTS", "k4", "k5", "k6")).toBe(":1\r\n");
    expect(kv.run("DBSIZE")).toBe(":18\r\n");
    expect(kv.run("INCR", "k4")).toBe(":1\r\n");
    expect(kv.run("TTL", "k4")).toBe(":-1\r\n");
    expect(kv.run("RENAME", "k5", "x")).toBe("-ERR no such key\r\n");
    const found: string[] = [];
    let cur = "0";
    do cur = db.scan(cur, { count: 3, match: null, type: null }, T0, found);
    while (cur !== "0");
    expect(found.sort()).toEqual(db.keys("*", T0).sort());
    expect(found).not.toContain("k5");
    expect(found).toContain("k4");
    s.close();
    expect(kv.run("DBSIZE")).toBe(":19\r\n");
    db.assertInvariants();
  });
});

describe("KvStateMachine.beginSnapshot", () => {
  test("a snapshot read while entries are applied restores to the state (digest) at begin", () => {
    const fsm = new KvStateMachine();
    const out = new ReplyBuffer(64);
    const r = rng(42);
    let now = T0;
    const run = (...argv: string[]) => {
      out.reset();
      fsm.apply(argv, (now += 1 + Math.floor(r() * 5)), out);
    };
    for (let i = 0; i < 3000; i++) {
      const k = `k${Math.floor(r() * 500)}`;
      if (r() < 0.3) run("SET", k, `v${i}`, "PX", String(1 + Math.floor(r() * 5000)));
      else run("SET", k, `v${i}`);
    }
    const { appliedMs, snapshot } = fsm.beginSnapshot();
    expect(appliedMs).toBe(fsm.appliedMs);
    const digestAtBegin = fsm.digest();
    const entries: DbEntry[] = [];
    for (let c = snapshot.next(37); c !== null; c = snapshot.next(37)) {
      entries.push(...c);
      for (let j = 0; j < 20; j++) {
        const k = `k${Math.floor(r() * 700)}`;
        const x = r();
        if (x < 0.3) run("DEL", k);
        else if (x < 0.5) run("SET", k, "new", "PX", "100");
        else if (x < 0.6) run("FLUSHALL");
        else if (x < 0.8) run("INCR", k);
        else run("PEXPIRE", k, "1");
        fsm.sweepExpired(10);
      }
    }
    const fresh = new KvStateMachine();
    fresh.restore(appliedMs, entries);
    expect(fresh.digest()).toBe(digestAtBegin);
    // The old API still works alongside.
    const old = fsm.snapshot();
    const copy = new KvStateMachine();
    copy.restore(old.appliedMs, [...old.entries]);
    expect(copy.digest()).toBe(fsm.digest());
  });
});

describe("findExpired during a snapshot", () => {
  test("a key deleted while a snapshot is open (a tombstone) is not listed; the live expired keys are", () => {
    const db = filled(20, 1); // every key expires at T0 + 1000 + i
    const s = db.beginSnapshot();
    for (let i = 0; i < 10; i++) expect(db.delete(`k${i}`)).toBe(true);
    const found = db.findExpired(T0 + 5000, 100).sort();
    expect(found).toEqual(Array.from({ length: 10 }, (_, i) => `k${i + 10}`).sort());
    expect(db.dbsize()).toBe(10);
    drain(s);
    db.assertInvariants();
  });
});
