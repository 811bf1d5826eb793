// The KV state machine adapter: entry payloads and snapshot images (round trip, damage), replicas that
// apply the same entries agree (also one restored from a snapshot midway), leader-decided expirations
// racing writes, and a 3-node runtime over the in-memory twins applying KV commands.
import { describe, expect, test } from "bun:test";
import type { DbEntry } from "../../src/kv/db.ts";
import {
  COMMAND_ENTRY_OVERHEAD_BYTES,
  decodeKvImage,
  decodeKvPayload,
  encodeCommandEntry,
  encodeExpireEntry,
  encodeKvImage,
  EXPIRE_BATCH_KEYS_MAX,
  KvImageError,
  KvPayloadError,
} from "../../src/node/kv-payload.ts";
import { KvEntryError, KvRaftStateMachine, type KvApplyResult } from "../../src/node/kv-state-machine.ts";
import { MemoryRaftStorage } from "../../src/node/memory-storage.ts";
import { RaftNode } from "../../src/node/raft-node.ts";
import { MemoryNetwork } from "../../src/node/transport.ts";
import { Rand } from "../../src/raft/rand.ts";
import { bootstrapStorage, MemoryStorage } from "../../src/raft/storage.ts";
import { encodeConfChange, type Entry, type NodeId } from "../../src/raft/types.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";
import { encodedCommandBytes } from "../../src/resp/request-parser.ts";
import { prng } from "../helpers/prng.ts";

const text = (b: KvApplyResult): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString("latin1"));
const normal = (index: number, data: Uint8Array): Entry => ({ index, term: 1, type: "normal", data });
const ALL_BYTES = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));

/** Every key held (expired ones not yet reclaimed included), sorted: equal on replicas in the same state. */
function keyspace(sm: KvRaftStateMachine): string[] {
  return [...sm.kv.db.entries()].map(([k, v, at]) => JSON.stringify([k, v, String(at)])).sort();
}

/** Calls f and returns what it threw (fails the test when it returns). */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

describe("entry payloads", () => {
  test("a command entry round-trips its time, reply protocol and binary-safe arguments", () => {
    const argv = ["SET", ALL_BYTES, "", "PX", "100"];
    for (const [timeMs, proto] of [
      [0, 2],
      [1_765_000_000_123, 3],
      [Number.MAX_SAFE_INTEGER, 2],
    ] as const) {
      const b = encodeCommandEntry(argv, timeMs, proto);
      expect(b.length).toBe(encodedCommandBytes(argv) + COMMAND_ENTRY_OVERHEAD_BYTES);
      expect(decodeKvPayload(b)).toEqual({ kind: "command", timeMs, proto, argv });
    }
  });

  test("an expiration entry round-trips its time and keys", () => {
    const keys = ["a", ALL_BYTES, ""];
    expect(decodeKvPayload(encodeExpireEntry(keys, 42))).toEqual({ kind: "expire", timeMs: 42, keys });
    const full = Array.from({ length: EXPIRE_BATCH_KEYS_MAX }, (_, i) => `k${i}`);
    expect(decodeKvPayload(encodeExpireEntry(full, 7))).toEqual({ kind: "expire", timeMs: 7, keys: full });
    expect(() => encodeExpireEntry([...full, "one more"], 7)).toThrow();
    expect(() => encodeExpireEntry([], 7)).toThrow();
  });

  test("every truncation, a wrong version, kind or protocol, trailing bytes and a time past 2^53 are KvPayloadError", () => {
    for (const good of [encodeCommandEntry(["SET", "key", "value"], 1234, 3), encodeExpireEntry(["a", "bc"], 99)]) {
      for (let n = 0; n < good.length; n++) expect(thrown(() => decodeKvPayload(good.subarray(0, n)))).toBeInstanceOf(KvPayloadError);
      const mutate = (at: number, v: number): Buffer => {
        const b = Buffer.from(good);
        b[at] = v;
        return b;
      };
      expect(thrown(() => decodeKvPayload(mutate(0, 2)))).toBeInstanceOf(KvPayloadError); // version
      expect(thrown(() => decodeKvPayload(mutate(1, 9)))).toBeInstanceOf(KvPayloadError); // kind
      expect(decodeKvPayload(mutate(9, 0x00)).timeMs).toBe(decodeKvPayload(good).timeMs); // high byte of time 0: still valid
      expect(thrown(() => decodeKvPayload(mutate(9, 0x80)))).toBeInstanceOf(KvPayloadError); // time >= 2^63
      expect(thrown(() => decodeKvPayload(Buffer.concat([good, Buffer.from("x")])))).toBeInstanceOf(KvPayloadError);
    }
    const cmd = encodeCommandEntry(["GET", "k"], 5, 2);
    cmd[10] = 4;
    expect(thrown(() => decodeKvPayload(cmd))).toBeInstanceOf(KvPayloadError);
    // The keys of an expiration past the batch limit (hand-built: the encoder refuses them).
    const over = Buffer.from(encodeCommandEntry(Array.from({ length: EXPIRE_BATCH_KEYS_MAX + 1 }, () => "k"), 5));
    const asExpire = Buffer.concat([Buffer.from([1, 2]), over.subarray(2, 10), over.subarray(11)]);
    expect(thrown(() => decodeKvPayload(asExpire))).toBeInstanceOf(KvPayloadError);
  });

  test("random byte flips decode to some payload or a KvPayloadError, never another exception", () => {
    const seed = Number(process.env.SEED ?? 15);
    const r = prng(seed);
    const goods = [encodeCommandEntry(["SET", "k", "v", "EX", "10"], 77, 2), encodeExpireEntry(["x", "yy", "zzz"], 88)];
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(goods[i % 2]!);
      for (let f = 1 + Math.floor(r() * 3); f > 0; f--) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
      try {
        decodeKvPayload(b);
      } catch (e) {
        if (!(e instanceof KvPayloadError)) throw new Error(`seed ${seed} flip ${i}: ${String(e)}`);
      }
    }
  });

  test("an entry the node cannot read stops it with KvEntryError naming the index, applied index unchanged", () => {
    const sm = new KvRaftStateMachine();
    sm.apply(normal(1, encodeCommandEntry(["SET", "a", "1"], 10)));
    const bad = Buffer.from(encodeCommandEntry(["SET", "a", "2"], 11));
    bad[0] = 9;
    const e = thrown(() => sm.apply(normal(2, bad)));
    expect(e).toBeInstanceOf(KvEntryError);
    expect((e as KvEntryError).index).toBe(2);
    expect(sm.applied).toBe(1);
    expect(keyspace(sm)).toEqual([JSON.stringify(["a", "1", "undefined"])]);
  });
});

describe("snapshot images", () => {
  const entries: DbEntry[] = [
    ["plain", "v", undefined],
    [ALL_BYTES, ALL_BYTES, 1_765_000_000_000],
    ["", "", 0],
    ["far", "x", 2n ** 62n],
    ["neg", "y", -5],
    ["safe edge", "z", Number.MAX_SAFE_INTEGER],
  ];

  test("an image round-trips the applied time and every entry (int64 expiries, binary bytes)", () => {
    const img = decodeKvImage(encodeKvImage(123_456, () => entries));
    expect(img.appliedMs).toBe(123_456);
    expect(img.count).toBe(entries.length);
    expect([...img.entries]).toEqual(entries);
    const empty = decodeKvImage(new Uint8Array(0));
    expect([empty.appliedMs, empty.count, [...empty.entries]]).toEqual([0, 0, []]);
  });

  test("every truncation, trailing bytes, bad flags or version, and duplicate keys are errors", () => {
    const good = Buffer.from(encodeKvImage(9, () => entries));
    for (let n = 1; n < good.length; n++) expect(thrown(() => decodeKvImage(good.subarray(0, n)))).toBeInstanceOf(KvImageError);
    expect(thrown(() => decodeKvImage(Buffer.concat([good, Buffer.from([0])])))).toBeInstanceOf(KvImageError);
    const v = Buffer.from(good);
    v[0] = 3;
    expect(thrown(() => decodeKvImage(v))).toBeInstanceOf(KvImageError);
    const f = Buffer.from(good);
    f[25] = 4; // first entry's flags (1: expiry, 2: revision; 4 is none)
    expect(thrown(() => decodeKvImage(f))).toBeInstanceOf(KvImageError);
    const sm = new KvRaftStateMachine();
    const dup = encodeKvImage(1, () => [
      ["a", "1", undefined],
      ["a", "2", undefined],
    ]);
    const e = thrown(() => sm.restore({ meta: { index: 4, term: 1, confState: { voters: [1], learners: [] } }, data: dup }));
    expect(e).toBeInstanceOf(KvEntryError);
    expect((e as KvEntryError).reason).toBeInstanceOf(KvImageError);
  });
});

/** A random command on a few keys (writes, reads, errors), as clients would send them. */
function randomArgv(r: () => number): string[] {
  const key = (): string => `k${Math.floor(r() * 5)}`;
  const num = (n: number): string => String(Math.floor(r() * n));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  switch (Math.floor(r() * 16)) {
    case 0:
    case 1: {
      const argv = ["SET", key(), pick(["a", "1", "22", "xyz"])];
      const ttl = r();
      if (ttl < 0.3) argv.push("PX", String(1 + Math.floor(r() * 600)));
      else if (ttl < 0.4) argv.push("EX", "1");
      else if (ttl < 0.5) argv.push("KEEPTTL");
      const cond = r();
      if (cond < 0.15) argv.push("NX");
      else if (cond < 0.3) argv.push("XX");
      if (r() < 0.2) argv.push("GET");
      return argv;
    }
    case 2:
      return ["GET", key()];
    case 3:
      return ["INCR", key()];
    case 4:
      return ["INCRBY", key(), num(100)];
    case 5:
      return ["APPEND", key(), pick(["x", "7"])];
    case 6:
      return ["DEL", key(), key()];
    case 7:
      return ["GETDEL", key()];
    case 8:
      return ["PEXPIRE", key(), num(800)];
    case 9:
      return ["PERSIST", key()];
    case 10:
      return ["SETNX", key(), "n"];
    case 11:
      return ["MSET", key(), "m1", key(), "m2"];
    case 12:
      return ["PTTL", key()];
    case 13:
      return ["INCRBYFLOAT", key(), "1.5"];
    case 14:
      return ["EXISTS", key(), key()];
    default:
      return pick([["NOSUCHCMD", "x"], ["GET"], ["EXPIRE", key(), "notanumber"]]);
  }
}

/**
 * Entries a leader could commit: commands (times mostly rising, sometimes a lagging new leader's),
 * expirations of keys the leader's state holds expired (plus a key that is not), no-ops and
 * membership changes. `leader` is the state the leader decides expirations from.
 */
function randomEntries(r: () => number, n: number): Entry[] {
  const leader = new KvRaftStateMachine();
  const out: Entry[] = [];
  let t = 1_000_000;
  for (let index = 1; index <= n; index++) {
    t += r() < 0.05 ? -400 : Math.floor(r() * 120);
    const x = r();
    let e: Entry;
    if (x < 0.03) e = { index, term: 1, type: "normal", data: new Uint8Array(0) };
    else if (x < 0.05) e = { index, term: 1, type: "conf-change", data: encodeConfChange({ type: "add-voter", node: 2 }) };
    else if (x < 0.15) {
      const keys = leader.findExpired(t, 1 + Math.floor(r() * 3));
      keys.push(`k${Math.floor(r() * 5)}`);
      e = normal(index, encodeExpireEntry(keys, t));
    } else e = normal(index, encodeCommandEntry(randomArgv(r), t, r() < 0.5 ? 2 : 3));
    leader.apply(e);
    out.push(e);
  }
  return out;
}

describe("replicas applying the same entries", () => {
  test("two replicas and a third restored from a snapshot midway end equal, with equal replies (seeded)", () => {
    const first = Number(process.env.SEED ?? 1);
    const seeds = Number(process.env.SEEDS ?? 40);
    let expired = 0;
    let ttls = 0;
    for (let seed = first; seed < first + seeds; seed++) {
      try {
        const r = prng(seed);
        const entries = randomEntries(r, 300);
        const mid = 1 + Math.floor(r() * (entries.length - 2));
        const a = new KvRaftStateMachine();
        const b = new KvRaftStateMachine();
        let c: KvRaftStateMachine | undefined;
        for (const e of entries) {
          const ra = text(a.apply(e));
          expect(text(b.apply(e))).toBe(ra as string);
          if (c) expect(text(c.apply(e))).toBe(ra as string);
          if (e.type === "normal" && e.data.length > 0 && decodeKvPayload(e.data).kind === "command") expect(ra).toBeDefined();
          else expect(ra).toBeUndefined();
          if (e.index === mid) {
            c = new KvRaftStateMachine();
            c.restore({ meta: { index: mid, term: 1, confState: { voters: [1], learners: [] } }, data: a.snapshot() });
            expect(c.applied).toBe(mid);
            expect(keyspace(c)).toEqual(keyspace(a));
          }
        }
        expired += a.keysExpired;
        for (const [, , at] of a.kv.db.entries()) if (at !== undefined) ttls++;
        for (const x of [b, c!]) {
          expect(keyspace(x)).toEqual(keyspace(a));
          expect(x.kv.appliedMs).toBe(a.kv.appliedMs);
          expect(x.applied).toBe(entries.length);
        }
      } catch (e) {
        throw new Error(`seed ${seed} (replay: SEED=${seed} SEEDS=1 bun test tests/node/kv-state-machine.test.ts): ${(e as Error).message}`);
      }
    }
    // The runs exercised what they are about: expirations that deleted keys, and keys with a TTL in the images.
    expect(expired).toBeGreaterThan(seeds);
    expect(ttls).toBeGreaterThan(0);
  });

  test("the applied index moves by exactly one (a gap or a repeat is a broken invariant)", () => {
    const sm = new KvRaftStateMachine();
    sm.apply(normal(1, encodeCommandEntry(["SET", "a", "1"], 1)));
    expect(() => sm.apply(normal(3, encodeCommandEntry(["SET", "a", "2"], 2)))).toThrow("kv applied 3 after 1");
    expect(() => sm.apply(normal(1, encodeCommandEntry(["SET", "a", "2"], 2)))).toThrow("kv applied 1 after 1");
    expect(sm.apply({ index: 2, term: 1, type: "normal", data: new Uint8Array(0) })).toBeUndefined();
    expect(sm.applied).toBe(2);
  });
});

describe("expirations decided by the leader", () => {
  const T = 1_000_000;

  test("an expiration deletes a key only if it still expires at or before the entry's time", () => {
    const sm = new KvRaftStateMachine();
    let i = 0;
    const run = (argv: string[], t: number): string | undefined => text(sm.apply(normal(++i, encodeCommandEntry(argv, t))));
    const expire = (keys: string[], t: number): void => void sm.apply(normal(++i, encodeExpireEntry(keys, t)));
    for (const k of ["rewritten", "longer", "expired", "persisted", "due-exactly"]) run(["SET", k, "old", "PX", "100"], T);
    // The leader sees them all expired at T+200 and proposes the batch; before the batch commits,
    // writes that were appended earlier are applied first:
    expect(run(["PERSIST", "persisted"], T + 50)).toBe(":1\r\n"); // TTL removed before it passed
    run(["SET", "rewritten", "new"], T + 150); // no TTL now
    run(["SET", "longer", "new", "PX", "1000"], T + 150); // expires at T+1150
    run(["SET", "due-exactly", "new", "PX", "50"], T + 150); // expires at T+200: still due
    expire(["rewritten", "longer", "expired", "persisted", "due-exactly", "never-existed"], T + 200);
    expect(sm.keysExpired).toBe(2);
    expect(run(["GET", "rewritten"], T + 201)).toBe("$3\r\nnew\r\n");
    expect(run(["GET", "longer"], T + 201)).toBe("$3\r\nnew\r\n");
    expect(run(["GET", "persisted"], T + 201)).toBe("$3\r\nold\r\n");
    expect(run(["EXISTS", "expired", "due-exactly", "never-existed"], T + 201)).toBe(":0\r\n");
    expect(sm.kv.db.dbsize()).toBe(3); // deleted, not just hidden
  });

  test("a SET after the expiry was decided but before the expiration commits keeps its key", () => {
    // The leader decided at T+200 that k expired; the client's SET k (no TTL) is appended before the
    // expiration entry. Every replica applies SET then the expiration: k stays, with the new value.
    const entries = [
      normal(1, encodeCommandEntry(["SET", "k", "v1", "PX", "100"], T)),
      normal(2, encodeCommandEntry(["SET", "k", "v2"], T + 210)),
      normal(3, encodeExpireEntry(["k"], T + 200)),
      normal(4, encodeCommandEntry(["GET", "k"], T + 220)),
    ];
    const replicas = [new KvRaftStateMachine(), new KvRaftStateMachine()];
    for (const sm of replicas) {
      const replies = entries.map((e) => text(sm.apply(e)));
      expect(replies).toEqual(["+OK\r\n", "+OK\r\n", undefined, "$2\r\nv2\r\n"]);
      expect(sm.keysExpired).toBe(0);
    }
    // The applied time never goes back: the expiration's earlier time does not lower it.
    expect(replicas[0]!.kv.appliedMs).toBe(T + 220);
  });

  test("an expiration's time is a time the leader saw: later entries stamped earlier (a lagging clock) run at it", () => {
    const sm = new KvRaftStateMachine();
    sm.apply(normal(1, encodeCommandEntry(["SET", "other", "v", "PX", "30"], T + 150))); // expires at T+180
    sm.apply(normal(2, encodeExpireEntry(["unrelated"], T + 200)));
    expect(sm.kv.appliedMs).toBe(T + 200);
    // A new leader whose clock lags stamps T+160: "other" is still expired, as the old leader saw at T+200.
    expect(text(sm.apply(normal(3, encodeCommandEntry(["GET", "other"], T + 160))))).toBe("$-1\r\n");
  });

  test("findExpired gives the keys expired at the leader's time, bounded, resuming, and deletes nothing", () => {
    const sm = new KvRaftStateMachine();
    let i = 0;
    for (let k = 0; k < 10; k++) sm.apply(normal(++i, encodeCommandEntry(["SET", `due${k}`, "v", "PX", "100"], T)));
    sm.apply(normal(++i, encodeCommandEntry(["SET", "later", "v", "PX", "5000"], T)));
    sm.apply(normal(++i, encodeCommandEntry(["SET", "forever", "v"], T)));
    expect(sm.findExpired(T + 99)).toEqual([]);
    const first = sm.findExpired(T + 100, 4);
    const second = sm.findExpired(T + 100, 4);
    expect(first).toHaveLength(4);
    expect(second).toHaveLength(4);
    expect(new Set([...first, ...second]).size).toBe(8); // the second call resumed after the first
    expect(sm.kv.db.dbsize()).toBe(12);
    const all = sm.findExpired(T + 100).sort();
    expect(all).toEqual(Array.from({ length: 10 }, (_, k) => `due${k}`));
    // Proposed and applied: every member deletes them.
    sm.apply(normal(++i, encodeExpireEntry(all, T + 100)));
    expect(sm.keysExpired).toBe(10);
    expect(sm.findExpired(T + 100)).toEqual([]);
    expect(sm.kv.db.dbsize()).toBe(2);
  });

  test("a read at the local clock hides a key whose expiry passed, without moving the replicated time", () => {
    const sm = new KvRaftStateMachine();
    sm.apply(normal(1, encodeCommandEntry(["SET", "k", "v", "PX", "100"], T))); // expires at T+100
    const read = (argv: string[], wallMs: number): string => {
      const out = new ReplyBuffer(64);
      sm.read(argv, wallMs, out);
      return out.view().toString("latin1");
    };
    expect(read(["GET", "k"], T + 50)).toBe("$1\r\nv\r\n");
    expect(read(["GET", "k"], T + 150)).toBe("$-1\r\n"); // this member's clock is past the expiry
    expect(read(["GET", "k"], T - 1000)).toBe("$1\r\nv\r\n"); // a clock behind the log's time reads at the log's time
    expect(sm.kv.appliedMs).toBe(T);
    // The log's next entry still runs at its own time: the key is live for it on every member.
    expect(text(sm.apply(normal(2, encodeCommandEntry(["SET", "k", "w", "XX", "KEEPTTL"], T + 60))))).toBe("+OK\r\n");
    expect(read(["GET", "nosuch", "extra"], T)).toBe("-ERR wrong number of arguments for 'get' command\r\n");
    expect(() => read(["SET", "k", "x"], T)).toThrow("not read-only");
  });

  test("an expiration applied before the rewrite deletes the old key, and the rewrite creates it again", () => {
    const sm = new KvRaftStateMachine();
    sm.apply(normal(1, encodeCommandEntry(["SET", "k", "v1", "PX", "100"], T)));
    sm.apply(normal(2, encodeExpireEntry(["k"], T + 200)));
    expect(sm.keysExpired).toBe(1);
    expect(sm.kv.db.dbsize()).toBe(0);
    expect(text(sm.apply(normal(3, encodeCommandEntry(["SET", "k", "v2", "NX"], T + 210))))).toBe("+OK\r\n");
    expect(text(sm.apply(normal(4, encodeCommandEntry(["GET", "k"], T + 220))))).toBe("$2\r\nv2\r\n");
  });
});

describe("a 3-node runtime applying KV commands", () => {
  interface KNode {
    node: RaftNode<KvApplyResult>;
    sm: KvRaftStateMachine;
    storage: MemoryRaftStorage;
  }

  function cluster(ids: NodeId[], snapshotEntries = 0) {
    const net = new MemoryNetwork();
    const cut = new Set<NodeId>();
    net.route = (m) => {
      if (!cut.has(m.from) && !cut.has(m.to)) net.queue.push(m);
    };
    const nodes = new Map<NodeId, KNode>();
    for (const id of ids) {
      const disk = new MemoryStorage();
      bootstrapStorage(disk, ids);
      const storage = new MemoryRaftStorage(disk);
      const sm = new KvRaftStateMachine();
      const node = new RaftNode<KvApplyResult>({
        id,
        storage,
        transport: net.attach(id),
        stateMachine: sm,
        rand: new Rand(id),
        raft: { electionTicks: 10, heartbeatTicks: 1 },
        snapshotEntries,
        saveSnapshot: (meta, data) => {
          storage.saveImage(meta.index, data);
          return Promise.resolve();
        },
      });
      nodes.set(id, { node, sm, storage });
    }
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 200; i++) {
        await new Promise<void>((r) => setImmediate(r));
        if (net.flush() === 0) {
          await new Promise<void>((r) => setImmediate(r));
          if (net.queue.length === 0) return;
        }
      }
      throw new Error("cluster did not settle");
    };
    return { net, cut, nodes, settle, get: (id: NodeId) => nodes.get(id)! };
  }

  test("SET/GET/INCR proposals on the leader return their RESP replies; every member ends with the same keyspace", async () => {
    const c = cluster([1, 2, 3]);
    await c.settle();
    c.get(1).node.campaign();
    await c.settle();
    const leader = c.get(1);
    expect(leader.node.status().role).toBe("leader");
    let t = 1_000_000;
    const propose = async (argv: string[], proto: 2 | 3 = 2): Promise<string | undefined> => {
      const p = leader.node.propose(encodeCommandEntry(argv, (t += 10), proto));
      await c.settle();
      return text(await p);
    };
    expect(await propose(["SET", "a", "1"])).toBe("+OK\r\n");
    expect(await propose(["GET", "a"])).toBe("$1\r\n1\r\n");
    expect(await propose(["INCR", "a"])).toBe(":2\r\n");
    expect(await propose(["INCR", "n"])).toBe(":1\r\n");
    expect(await propose(["INCR", "n"])).toBe(":2\r\n");
    expect(await propose(["SET", "a", "x", "GET"])).toBe("$1\r\n2\r\n");
    expect(await propose(["INCR", "a"])).toBe("-ERR value is not an integer or out of range\r\n");
    expect(await propose(["GET", "missing"])).toBe("$-1\r\n");
    expect(await propose(["GET", "missing"], 3)).toBe("_\r\n");
    expect(await propose(["SET", "ttl", "v", "PX", "50"])).toBe("+OK\r\n");
    // The leader decides "ttl" expired and proposes the expiration: no reply, the key goes everywhere.
    const at = (t += 100);
    expect(text(await (async () => {
      const p = leader.node.propose(encodeExpireEntry(["ttl"], at));
      await c.settle();
      return p;
    })())).toBeUndefined();
    // Followers learn the last commit index from the next heartbeat.
    leader.node.tick();
    await c.settle();
    const applied = leader.sm.applied;
    for (const id of [2, 3]) {
      expect(c.get(id).sm.applied).toBe(applied);
      expect(keyspace(c.get(id).sm)).toEqual(keyspace(leader.sm));
      expect(c.get(id).sm.keysExpired).toBe(1);
    }
    expect(keyspace(leader.sm)).toEqual([JSON.stringify(["a", "x", "undefined"]), JSON.stringify(["n", "2", "undefined"])]);
  });

  test("a member cut off while the log is compacted catches up from the leader's snapshot to the same keyspace", async () => {
    const c = cluster([1, 2, 3], 5);
    await c.settle();
    c.get(1).node.campaign();
    await c.settle();
    const leader = c.get(1);
    c.cut.add(3);
    let t = 2_000_000;
    for (let i = 0; i < 20; i++) {
      const p = leader.node.propose(encodeCommandEntry(i % 3 === 0 ? ["INCR", "n"] : ["SET", `k${i % 4}`, `v${i}`, "PX", String(1000 * i)], (t += 7)));
      await c.settle();
      expect(text(await p)).toBeDefined();
    }
    expect(leader.storage.firstIndex()).toBeGreaterThan(c.get(3).sm.applied + 1); // 3 can only catch up from a snapshot
    c.cut.clear();
    for (let i = 0; i < 20 && c.get(3).sm.applied < leader.sm.applied; i++) {
      leader.node.tick();
      await c.settle();
    }
    for (const id of [2, 3]) {
      expect(c.get(id).sm.applied).toBe(leader.sm.applied);
      expect(keyspace(c.get(id).sm)).toEqual(keyspace(leader.sm));
      expect(c.get(id).sm.kv.appliedMs).toBe(leader.sm.kv.appliedMs);
    }
  });
});
