// Transactions and revisions in the state machine: KV.TXN's encoding, its all-or-nothing
// apply, WATCH's decision (changed, deleted, created and deleted, expired) made alike on replicas
// whatever snapshot they restored from, revisions through copy-on-write snapshots, images and
// snapshot files (the old formats still read).
import { describe, expect, test } from "bun:test";
import { Db, TOMBSTONE_KEY_BYTES_MAX, TOMBSTONES_MAX, type DbEntry } from "../../src/kv/db.ts";
import { decodeTxn, encodeTxn, TXN_COMMANDS_MAX } from "../../src/kv/txn.ts";
import { decodeKvImage, decodeSnapshotMeta, encodeCommandEntry, encodeExpireEntry, encodeKvImage, encodeSnapshotMeta } from "../../src/node/kv-payload.ts";
import { KvRaftStateMachine, type KvApplyResult } from "../../src/node/kv-state-machine.ts";
import type { Entry } from "../../src/raft/types.ts";
import { KvStateMachine } from "../../src/kv/fsm.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";
import { SnapshotStore, type SnapshotEntry } from "../../src/storage/snapshot-store.ts";
import { tempDirs } from "../helpers/tmp.ts";
import { T0 } from "./helpers.ts";

const tempDir = tempDirs("kv-txn-");
const text = (b: KvApplyResult): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString("latin1"));

/** A replica fed command entries one index at a time. */
class Replica {
  readonly sm = new KvRaftStateMachine();
  next = 1;
  run(argv: string[], t = T0, proto: 2 | 3 = 2): string | undefined {
    const e: Entry = { index: this.next++, term: 1, type: "normal", data: encodeCommandEntry(argv, t, proto) };
    return text(this.sm.apply(e));
  }
  expire(keys: string[], t: number): void {
    this.sm.apply({ index: this.next++, term: 1, type: "normal", data: encodeExpireEntry(keys, t) });
  }
  get w(): number {
    return this.sm.kv.db.rev;
  }
  live(k: string, t = T0): boolean {
    return this.sm.kv.db.has(k, t);
  }
  rev(k: string, t = T0): number {
    return this.sm.kv.db.revOf(k, t);
  }
}

const txn = (watched: [string, number, boolean][], ...commands: string[][]): string[] => encodeTxn({ watched, commands });

describe("KV.TXN encoding", () => {
  test("round trip; every malformed form is an error", () => {
    const t = { watched: [["k", 5, true] as const, ["", 0, false] as const], commands: [["SET", "a", "1"], ["GET", "a"], ["PING"]] };
    const argv = encodeTxn(t);
    expect(argv[0]).toBe("KV.TXN");
    expect(decodeTxn(argv)).toEqual(t);
    expect(decodeTxn(["KV.TXN", "0"])).toEqual({ watched: [], commands: [] });
    for (const bad of [["KV.TXN", "x"], ["KV.TXN", "1", "k", "5"], ["KV.TXN", "1", "k", "-1", "1"], ["KV.TXN", "1", "k", "5", "2"], ["KV.TXN", "0", "3", "SET", "a"], ["KV.TXN", "0", "0"], ["KV.TXN", "0", "1.5", "x"]]) {
      expect(typeof decodeTxn(bad)).toBe("string");
    }
    const many = ["KV.TXN", "0"];
    for (let i = 0; i <= TXN_COMMANDS_MAX; i++) many.push("1", "PING");
    expect(typeof decodeTxn(many)).toBe("string");
  });
});

describe("KV.TXN apply", () => {
  test("one entry: every command runs at its index, errors are elements of the array", () => {
    const r = new Replica();
    r.run(["SET", "s", "x"]);
    expect(r.run(txn([], ["SET", "a", "1"], ["INCR", "s"], ["INCR", "a"], ["GET", "a"]))).toBe("*4\r\n+OK\r\n-ERR value is not an integer or out of range\r\n:2\r\n$1\r\n2\r\n");
    expect(r.rev("a")).toBe(2);
    expect(r.rev("s")).toBe(1);
    expect(r.run(txn([]), T0, 3)).toBe("*0\r\n");
  });

  test("a malformed or refused command inside changes nothing (checked before any runs)", () => {
    const r = new Replica();
    expect(r.run(txn([], ["SET", "a", "1"], ["NOSUCH"]))).toStartWith("-ERR unknown command 'NOSUCH'");
    expect(r.run(txn([], ["SET", "a", "1"], ["SET", "a"]))).toBe("-ERR command 'set' is not allowed in this transaction\r\n");
    expect(r.run(txn([], ["SET", "a", "1"], ["KV.TXN", "0"]))).toBe("-ERR command 'kv.txn' is not allowed in this transaction\r\n");
    expect(r.run(["KV.TXN", "1", "k"])).toBe("-ERR malformed transaction\r\n");
    expect(r.live("a")).toBe(false);
    // KV.TXNREAD refuses writes.
    expect(r.run(encodeTxn({ watched: [], commands: [["SET", "a", "1"]] }, "KV.TXNREAD"))).toBe("-ERR command 'set' is not allowed in this transaction\r\n");
  });

  test("WATCH: changed, deleted, created, created and deleted, expired, TTL changed abort; unchanged runs", () => {
    const cases: [string, (r: Replica) => void, boolean, boolean][] = [
      // name, what happens between WATCH and EXEC, key live at WATCH, aborts
      ["unchanged", () => {}, true, false],
      ["unchanged absent", () => {}, false, false],
      ["overwritten", (r) => r.run(["SET", "k", "1"]), true, true],
      ["deleted", (r) => r.run(["DEL", "k"]), true, true],
      ["created", (r) => r.run(["SET", "k", "1"]), false, true],
      ["created and deleted", (r) => (r.run(["SET", "k", "1"]), r.run(["DEL", "k"])), false, true],
      ["created with a TTL that passed", (r) => r.run(["SET", "k", "1", "PX", "10"]), false, true],
      ["created with a TTL, then expired by the leader", (r) => (r.run(["SET", "k", "1", "PX", "10"]), r.expire(["k"], T0 + 20)), false, true],
      ["TTL set", (r) => r.run(["EXPIRE", "k", "100"]), true, true],
      ["another key written", (r) => r.run(["SET", "other", "1"]), true, false],
    ];
    for (const [name, between, liveAtWatch, aborts] of cases) {
      const r = new Replica();
      if (liveAtWatch) r.run(["SET", "k", "0"]);
      r.run(["SET", "z", "0"]);
      const w = r.w;
      expect(r.live("k"), name).toBe(liveAtWatch);
      between(r);
      const reply = r.run(txn([["k", w, liveAtWatch]], ["SET", "done", "1"]), T0 + 50);
      expect(reply, name).toBe(aborts ? "*-1\r\n" : "*1\r\n+OK\r\n");
      expect(r.live("done", T0 + 50), name).toBe(!aborts);
    }
  });

  test("a watched key that expires (by time, no entry) aborts; RESP3's null is _", () => {
    const r = new Replica();
    r.run(["SET", "k", "1", "PX", "100"]);
    const w = r.w;
    expect(r.run(txn([["k", w, true]], ["GET", "k"]), T0 + 50)).toBe("*1\r\n$1\r\n1\r\n");
    expect(r.run(txn([["k", w, true]], ["GET", "k"]), T0 + 100, 3)).toBe("_\r\n");
  });

  test("an absent watched key: removals of other keys do not abort, unless past the tombstones' bound (then conservative)", () => {
    const r = new Replica();
    r.run(["MSET", "other", "1", "k", "1"]);
    r.run(["DEL", "k"]);
    let w = r.w;
    r.run(["DEL", "other"]);
    expect(r.run(txn([["k", w, false]], ["GET", "k"]))).toBe("*1\r\n$-1\r\n");
    // TOMBSTONES_MAX more removals push k's tombstone out: its removal is then known only as "at most the floor".
    for (let i = 0; i < TOMBSTONES_MAX; i++) r.run(["SET", `x${i}`, "1"]), r.run(["DEL", `x${i}`]);
    expect(r.run(txn([["k", w, false]], ["GET", "k"]))).toBe("*-1\r\n"); // k was deleted before w, but its tombstone is gone
    w = r.w;
    r.run(["DEL", "x0"]); // nothing to delete: no removal
    expect(r.run(txn([["z", w, false]], ["GET", "z"]))).toBe("*1\r\n$-1\r\n");
    r.run(["SET", "k".repeat(TOMBSTONE_KEY_BYTES_MAX + 1), "1"]);
    r.run(["DEL", "k".repeat(TOMBSTONE_KEY_BYTES_MAX + 1)]); // a long key: the floor moves
    expect(r.run(txn([["z", w, false]], ["GET", "z"]))).toBe("*-1\r\n");
    w = r.w;
    r.run(["FLUSHALL"]);
    expect(r.run(txn([["never", w, false]], ["GET", "never"]))).toBe("*-1\r\n"); // FLUSHALL: the floor moves
    expect(r.sm.kv.db.tombstoneList().length).toBe(0);
  });
});

describe("revisions on replicas", () => {
  test("a replica restored from a snapshot between WATCH and EXEC decides alike and holds the same revisions", () => {
    for (let seed = 1; seed <= 30; seed++) {
      let x = seed;
      const rand = (n: number) => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0), x % n);
      const log: string[][] = [];
      const keys = ["a", "b", "c", "d"];
      const gen = (): string[] => {
        const k = keys[rand(keys.length)]!;
        switch (rand(6)) {
          case 0:
            return ["DEL", k];
          case 1:
            return ["SET", k, String(rand(9)), "PX", String(1 + rand(40))];
          case 2:
            return ["INCR", k];
          case 3:
            return ["FLUSHALL"];
          default:
            return ["SET", k, String(rand(9))];
        }
      };
      const a = new Replica();
      const watchedAt: [string, number, boolean][] = [];
      for (let i = 0; i < 40; i++) {
        const argv = i % 10 === 5 ? txn([[keys[rand(4)]!, a.w, a.live(keys[rand(4)]!, T0 + i)]], ["INCR", "n"]) : gen();
        log.push(argv);
        a.run(argv, T0 + i);
        if (i === 12) for (const k of keys) watchedAt.push([k, a.w, a.live(k, T0 + i)]);
      }
      // b replays up to a snapshot of a's state taken at index 20 (image), then the rest.
      const b = new Replica();
      for (let i = 0; i < 20; i++) b.run(log[i]!, T0 + i);
      const image = b.sm.snapshot();
      const c = new Replica();
      c.sm.restore({ meta: { index: 20, term: 1, confState: { voters: [1], learners: [] } }, data: image });
      c.next = 21;
      for (let i = 20; i < 40; i++) {
        expect(c.run(log[i]!, T0 + i), `seed ${seed} entry ${i + 1}`).toBe(b.run(log[i]!, T0 + i));
      }
      for (const k of keys) expect(c.rev(k, T0 + 40), `seed ${seed} ${k}`).toBe(a.rev(k, T0 + 40));
      const exec = txn(watchedAt, ["INCR", "done"]);
      expect(c.run(exec, T0 + 41)).toBe(a.run(exec, T0 + 41));
      expect(c.sm.kv.db.deleteFloor).toBe(a.sm.kv.db.deleteFloor);
    }
  });

  test("a copy-on-write snapshot emits each key's revision as of its start", () => {
    const db = new Db();
    db.rev = 3;
    db.set("a", "1");
    db.set("b", "1");
    const s = db.beginSnapshot();
    db.rev = 4;
    db.set("a", "2");
    db.delete("b");
    db.set("c", "1");
    const got: DbEntry[] = [];
    for (let ch = s.next(1); ch !== null; ch = s.next(1)) got.push(...ch);
    expect(got).toEqual([
      ["a", "1", undefined, 3],
      ["b", "1", undefined, 3],
    ]);
    expect([...db.entries()]).toEqual([
      ["a", "2", undefined, 4],
      ["c", "1", undefined, 4],
    ]);
    expect([db.deleteFloor, db.tombstoneList()]).toEqual([0, [["b", 4]]]);
    db.assertInvariants();
  });

  test("images: version 2 keeps revisions and the deletion floor; version 1 reads as changed at the snapshot's index", () => {
    const entries: DbEntry[] = [["a", "1", undefined, 7], ["b", "2", T0 + 5, 9]];
    const img = decodeKvImage(encodeKvImage(T0, () => entries, 8, [["gone", 8], ["\xff", 3]]));
    expect([img.appliedMs, img.deleteFloor, img.tombstones, img.count, [...img.entries]]).toEqual([T0, 8, [["gone", 8], ["\xff", 3]], 2, entries]);
    // A version 1 image, as the previous release wrote it: header of 17 bytes, flags 0 or 1.
    const v1 = Buffer.concat([Buffer.from([1]), u64(T0), u64(1), Buffer.from([0]), u32(1), u32(1), Buffer.from("a1", "latin1")]);
    const old = decodeKvImage(v1);
    expect([old.deleteFloor, old.tombstones, [...old.entries]]).toEqual([undefined, [], [["a", "1", undefined, undefined]]]);
    const sm = new KvRaftStateMachine();
    sm.restore({ meta: { index: 30, term: 1, confState: { voters: [1], learners: [] } }, data: v1 });
    expect(sm.kv.db.revOf("a", T0)).toBe(30);
    expect(sm.kv.db.deleteFloor).toBe(30);
  });

  test("snapshot files keep revisions (read, streamed and mapped); the meta carries the deletion floor, the old meta still reads", async () => {
    const store = SnapshotStore.open(tempDir());
    const entries: SnapshotEntry[] = [["a", "1", undefined, 2 ** 40 + 3], ["b", "2", T0, 5], ["c", "3", undefined, undefined]];
    await store.write({ lastIndex: 9, lastTerm: 1, meta: encodeSnapshotMeta(T0, 6) }, entries);
    const loaded = store.loadNewest()!;
    expect([...loaded.entries()]).toEqual(entries);
    const mapped: SnapshotEntry[] = [];
    const m = loaded.mapped()!;
    m.forEach((k, ref, at, rev) => mapped.push([k, m.values.value(ref), at, rev]));
    expect(mapped).toEqual(entries);
    expect(decodeSnapshotMeta(loaded.meta)).toEqual({ appliedMs: T0, deleteFloor: 6, tombstones: [] });
    expect(decodeSnapshotMeta(Buffer.from(String(T0)))).toEqual({ appliedMs: T0, deleteFloor: undefined, tombstones: [] });
    expect(typeof decodeSnapshotMeta(Buffer.from(`${T0} x`))).toBe("string");
    // With tombstones: every byte of a key, indexes past 2^32; every truncation is damage.
    const tombs: [string, number][] = [["\x00\xff\r\n", 7], ["k", 2 ** 40]];
    const withTombs = encodeSnapshotMeta(T0, 6, tombs);
    expect(decodeSnapshotMeta(withTombs)).toEqual({ appliedMs: T0, deleteFloor: 6, tombstones: tombs });
    for (let n = String(T0).length + 3; n < withTombs.length; n++) expect(typeof decodeSnapshotMeta(withTombs.subarray(0, n)), `cut at ${n}`).toBe("string");
    expect(typeof decodeSnapshotMeta(Buffer.concat([withTombs, Buffer.from([1])]))).toBe("string");
    const sm = new KvRaftStateMachine();
    sm.restoreEntries(9, T0, loaded.entries(), 3, 6);
    expect([sm.kv.db.revOf("a", 0), sm.kv.db.revOf("b", 0), sm.kv.db.revOf("c", 0), sm.kv.db.deleteFloor]).toEqual([2 ** 40 + 3, 5, 9, 6]);
  });
});

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

describe("keyspace events inside a transaction", () => {
  test("the same events, in the same order, as the commands applied one by one (new, expired, publish)", () => {
    const record = () => {
      const sm = new KvStateMachine();
      const events: string[] = [];
      sm.events = {
        newKeys: true,
        keyEvent: (cls, event, key) => void events.push(`${cls}:${event}:${key}`),
        publish: (ch, m) => (events.push(`publish:${ch}:${m}`), 1),
      };
      return { sm, events };
    };
    const setup = [["SET", "old", "1", "PX", "10"], ["SET", "b", "x"]];
    const cmds = [["SET", "a", "1"], ["INCR", "old"], ["RENAME", "b", "c"], ["PUBLISH", "ch", "m"], ["DEL", "a"], ["GET", "c"]];
    const one = record();
    const out = new ReplyBuffer(256);
    for (const c of setup) one.sm.apply(c, T0, out);
    one.events.length = 0;
    for (const c of cmds) one.sm.apply(c, T0 + 100, out);
    const txn_ = record();
    for (const c of setup) txn_.sm.apply(c, T0, out);
    txn_.events.length = 0;
    out.reset();
    txn_.sm.apply(encodeTxn({ watched: [], commands: cmds }), T0 + 100, out);
    expect(out.view().toString("latin1")).toBe("*6\r\n+OK\r\n:1\r\n+OK\r\n:1\r\n:1\r\n$1\r\nx\r\n");
    expect(txn_.events).toEqual(one.events);
    expect(one.events).toContain("256:expired:old");
    expect(one.events.some((e) => e.endsWith(":new:a"))).toBe(true);
  });
});
