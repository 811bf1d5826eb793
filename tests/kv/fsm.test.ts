// The state machine: replay gives the same replies and state; snapshots and sweeps at
// different moments do not change the live state; entry time never goes back.
import { describe, expect, test } from "bun:test";
import { KvStateMachine } from "../../src/kv/fsm.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";
import { rng, T0 } from "./helpers.ts";

function apply(fsm: KvStateMachine, argv: string[], nowMs: number): string {
  const out = new ReplyBuffer(64);
  fsm.apply(argv, nowMs, out);
  return out.view().toString("latin1");
}

/** A seeded log of write commands with leader timestamps (sometimes going backwards). */
function makeLog(seed: number, n: number): [string[], number][] {
  const r = rng(seed);
  const log: [string[], number][] = [];
  let now = T0;
  const key = () => `k${Math.floor(r() * 50)}`;
  for (let i = 0; i < n; i++) {
    now += Math.floor(r() * 40) - 5; // a new leader's clock may lag
    const x = Math.floor(r() * 12);
    const argv: string[][] = [
      ["SET", key(), `v${i}`],
      ["SET", key(), `v${i}`, "PX", String(1 + Math.floor(r() * 300))],
      ["SET", key(), `v${i}`, "NX", "EX", "1"],
      ["DEL", key(), key()],
      ["INCR", key()],
      ["APPEND", key(), "x"],
      ["PEXPIRE", key(), String(Math.floor(r() * 200) - 20)],
      ["PERSIST", key()],
      ["GETDEL", key()],
      ["GETEX", key(), "PX", "50"],
      ["MSET", key(), "a", key(), "b"],
      ["EXPIRE", key(), "1", "GT"],
    ];
    log.push([argv[x]!, now]);
  }
  return log;
}

describe("KvStateMachine", () => {
  test("replicas that sweep and snapshot at different moments agree on every reply and the live state", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const log = makeLog(seed, 2000);
      const a = new KvStateMachine();
      const b = new KvStateMachine();
      const r = rng(seed * 7);
      const repliesA: string[] = [];
      const repliesB: string[] = [];
      let bb = b;
      for (let i = 0; i < log.length; i++) {
        const [argv, now] = log[i]!;
        repliesA.push(apply(a, argv, now));
        repliesB.push(apply(bb, argv, now));
        if (r() < 0.2) a.sweepExpired(1 + Math.floor(r() * 5));
        if (r() < 0.01) {
          // b is rebuilt from its own snapshot, as after a restart.
          const snap = bb.snapshot();
          const fresh = new KvStateMachine();
          fresh.restore(snap.appliedMs, [...snap.entries]);
          bb = fresh;
        }
      }
      expect(repliesB).toEqual(repliesA);
      expect(bb.digest()).toBe(a.digest());
      expect(a.digest()).toMatch(/^\d+:[0-9a-f]{16}$/);
    }
  });

  test("entry time never goes back: a key expired at an earlier entry stays expired", () => {
    const fsm = new KvStateMachine();
    expect(apply(fsm, ["SET", "k", "v", "PX", "100"], T0)).toBe("+OK\r\n");
    expect(apply(fsm, ["APPEND", "j", "x"], T0 + 100)).toBe(":1\r\n");
    expect(fsm.appliedMs).toBe(T0 + 100);
    // A later entry stamped earlier (new leader, slower clock) is applied at T0 + 100.
    expect(apply(fsm, ["GETDEL", "k"], T0 + 50)).toBe("$-1\r\n");
    expect(fsm.appliedMs).toBe(T0 + 100);
    expect(apply(fsm, ["SET", "t", "v", "PX", "10"], T0 + 60)).toBe("+OK\r\n");
    expect(fsm.db.expireAt("t")).toBe(T0 + 110);
    expect(fsm.sweepExpired(10)).toBe(0);
    expect(apply(fsm, ["DBSIZE"], T0 + 110)).toBe(":2\r\n");
    expect(fsm.sweepExpired(10)).toBe(1);
  });

  test("unknown commands and bad arity get Redis's errors", () => {
    const fsm = new KvStateMachine();
    expect(apply(fsm, ["NOPE", "a", "b"], T0)).toBe("-ERR unknown command 'NOPE', with args beginning with: 'a' 'b' \r\n");
    expect(apply(fsm, ["GET"], T0)).toBe("-ERR wrong number of arguments for 'get' command\r\n");
    const out = new ReplyBuffer(64);
    expect(fsm.apply(["set", "a", "1"], T0, out)?.name).toBe("set");
  });

  test("digest depends on live content only", () => {
    const a = new KvStateMachine();
    const b = new KvStateMachine();
    apply(a, ["MSET", "x", "1", "y", "2"], T0);
    apply(b, ["MSET", "y", "2", "x", "1"], T0);
    apply(b, ["SET", "z", "3", "PX", "5"], T0);
    expect(a.digest(T0 + 5)).toBe(b.digest(T0 + 5));
    expect(a.digest(T0)).not.toBe(b.digest(T0));
    apply(b, ["SET", "x", "2"], T0);
    expect(a.digest(T0 + 5)).not.toBe(b.digest(T0 + 5));
  });
});
