// The linearizability checker (tests/helpers/linearizability.ts): hand-written histories with known
// answers, random histories from a real register run (linearizable by construction) and the same
// histories with one read changed, compared with a brute force over every order on small histories.
import { describe, expect, test } from "bun:test";
import { checkHistory, formatOp, type CheckResult, type Operation } from "../helpers/linearizability.ts";
import { generateHistory, mutateOneRead } from "../helpers/history-gen.ts";
import { prng } from "../helpers/prng.ts";

type C = number | string;
const G = (client: C, call: number, ret: number, result: string | null, key = "x"): Operation => ({ client, call, ret, key, kind: "get", outcome: "ok", result });
const S = (client: C, call: number, ret: number, arg: string, key = "x"): Operation => ({ client, call, ret, key, kind: "set", arg, outcome: "ok", result: "OK" });
const D = (client: C, call: number, ret: number, result: number, key = "x"): Operation => ({ client, call, ret, key, kind: "del", outcome: "ok", result });
const NX = (client: C, call: number, ret: number, arg: string, result: "OK" | null, key = "x"): Operation => ({ client, call, ret, key, kind: "setnx", arg, outcome: "ok", result });
const I = (client: C, call: number, ret: number, result: number, key = "x"): Operation => ({ client, call, ret, key, kind: "incr", outcome: "ok", result });
/** The same request, its outcome unknown (a timeout or -UNCERTAIN). */
const U = (op: Operation): Operation => ({ client: op.client, call: op.call, ret: Infinity, key: op.key, kind: op.kind, outcome: "unknown", ...(op.arg === undefined ? {} : { arg: op.arg }) });

const verdict = (h: readonly Operation[]): CheckResult["result"] => checkHistory(h).result;

describe("hand-written histories", () => {
  test("sequential writes and reads that see the latest value are linearizable", () => {
    expect(verdict([G(1, 0, 1, null), S(1, 2, 3, "a"), G(2, 4, 5, "a"), S(1, 6, 7, "b"), G(2, 8, 9, "b"), D(1, 10, 11, 1), G(2, 12, 13, null), D(2, 14, 15, 0)])).toBe("ok");
  });

  test("a stale read after an acknowledged write is not", () => {
    const h = [S(1, 0, 1, "a"), S(1, 2, 3, "b"), G(2, 4, 5, "a")];
    const r = checkHistory(h);
    expect(r.result).toBe("illegal");
    if (r.result !== "illegal") return;
    // The explanation: the key, the longest legal order, and the read that did not fit.
    expect(r.explanation.key).toBe("x");
    expect(r.explanation.linearized.map((o) => o.arg)).toEqual(["a", "b"]);
    expect(r.explanation.state).toBe("b");
    expect(r.explanation.blocking).toEqual(h[2] as Operation);
    expect(r.message).toContain(formatOp(h[2] as Operation));
    // The same read overlapping the second write may see either value.
    expect(verdict([S(1, 0, 1, "a"), S(1, 2, 6, "b"), G(2, 4, 5, "a")])).toBe("ok");
  });

  test("a read of a value never written is not; nil before any write is", () => {
    expect(verdict([S(1, 0, 1, "a"), G(2, 2, 3, "z")])).toBe("illegal");
    expect(verdict([G(2, 0, 1, null), S(1, 2, 3, "a")])).toBe("ok");
    expect(verdict([G(2, 0, 1, "a"), S(1, 2, 3, "a")])).toBe("illegal"); // read before the write was called
  });

  test("two reads going back in time are not, even during a write", () => {
    // One long write; a first read sees the new value, a later read the old: impossible.
    expect(verdict([S(1, 0, 10, "a"), G(2, 1, 2, "a"), G(3, 3, 4, null)])).toBe("illegal");
    // The other way round is fine: old, then new.
    expect(verdict([S(1, 0, 10, "a"), G(2, 1, 2, null), G(3, 3, 4, "a")])).toBe("ok");
  });

  test("concurrent writes: reads may see either order, but all the same order", () => {
    const writes = [S(1, 0, 10, "a"), S(2, 0, 10, "b")];
    // c3 sees a then b; c4, later, sees b: the order a, b.
    expect(verdict([...writes, G(3, 1, 2, "a"), G(3, 3, 4, "b"), G(4, 5, 6, "b")])).toBe("ok");
    // c3 sees b then a; the order b, a.
    expect(verdict([...writes, G(3, 1, 2, "b"), G(3, 3, 4, "a"), G(4, 5, 6, "a")])).toBe("ok");
    // c3 sees a then b, c4 sees a again afterwards: each write happens once, so no order explains it.
    expect(verdict([...writes, G(3, 1, 2, "a"), G(3, 3, 4, "b"), G(4, 5, 6, "a")])).toBe("illegal");
    // After both writes return, either value may remain: the one called first, or the other.
    expect(verdict([S(1, 0, 2, "a"), S(2, 0, 2, "b"), G(3, 3, 4, "a")])).toBe("ok");
    expect(verdict([S(1, 0, 2, "a"), S(2, 0, 2, "b"), G(3, 3, 4, "b")])).toBe("ok");
    // Two readers concurrently disagreeing on the order, each twice.
    expect(verdict([...writes, G(3, 1, 2, "a"), G(4, 1, 2, "b"), G(3, 3, 4, "b"), G(4, 3, 4, "a")])).toBe("illegal");
  });

  test("SET NX: two overlapping successes are not linearizable, one success and one refusal are", () => {
    expect(verdict([NX(1, 0, 2, "a", "OK"), NX(2, 1, 3, "b", "OK")])).toBe("illegal");
    expect(verdict([NX(1, 0, 2, "a", "OK"), NX(2, 1, 3, "b", null), G(3, 4, 5, "a")])).toBe("ok");
    expect(verdict([NX(1, 0, 2, "a", "OK"), NX(2, 1, 3, "b", null), G(3, 4, 5, "b")])).toBe("illegal");
    // A DEL between them makes two successes possible.
    expect(verdict([NX(1, 0, 5, "a", "OK"), D(3, 0, 5, 1), NX(2, 0, 5, "b", "OK"), G(3, 6, 7, "b")])).toBe("ok");
    // SET NX refused on an absent key.
    expect(verdict([NX(1, 0, 1, "a", null)])).toBe("illegal");
  });

  test("DEL's count and INCR's value are checked", () => {
    expect(verdict([S(1, 0, 1, "a"), D(1, 2, 3, 0)])).toBe("illegal");
    expect(verdict([D(1, 0, 1, 1)])).toBe("illegal");
    expect(verdict([I(1, 0, 1, 1), I(2, 2, 3, 2), G(1, 4, 5, "2")])).toBe("ok");
    expect(verdict([I(1, 0, 1, 1), I(2, 2, 3, 1)])).toBe("illegal"); // a lost increment
    expect(verdict([I(1, 0, 5, 1), I(2, 0, 5, 2)])).toBe("ok");
    expect(verdict([I(1, 0, 5, 2), I(2, 0, 5, 2)])).toBe("illegal");
    expect(verdict([S(1, 0, 1, "v"), I(1, 2, 3, 1)])).toBe("illegal"); // INCR of a non-integer cannot succeed
  });

  test("a write with an unknown outcome may explain a later read, or never have happened", () => {
    // A timed-out SET, then reads seeing it: it took effect.
    expect(verdict([U(S(1, 0, 1, "a")), G(2, 5, 6, "a"), G(2, 7, 8, "a")])).toBe("ok");
    // ... or not seeing it: it never took effect (or not yet).
    expect(verdict([U(S(1, 0, 1, "a")), G(2, 5, 6, null)])).toBe("ok");
    // It may take effect long after the client gave up: after an acknowledged write from someone else.
    expect(verdict([U(S(1, 0, 1, "a")), S(2, 2, 3, "b"), G(3, 10, 11, "b"), G(3, 12, 13, "a")])).toBe("ok");
    // An unknown SET NX that succeeded explains a refusal.
    expect(verdict([U(NX(1, 0, 1, "a", "OK")), NX(2, 2, 3, "b", null), G(2, 4, 5, "a")])).toBe("ok");
  });

  test("a write with an unknown outcome cannot explain what it cannot have caused", () => {
    // It took effect before the first read returned, so a later read cannot see nil (nobody deleted).
    expect(verdict([U(S(1, 0, 1, "a")), G(2, 5, 6, "a"), G(2, 7, 8, null)])).toBe("illegal");
    // A read that returned before the write was even sent cannot see it.
    expect(verdict([G(2, 0, 1, "a"), U(S(1, 2, 3, "a"))])).toBe("illegal");
    // It happens at most once: a, b, then a again needs two writes of a.
    expect(verdict([U(S(1, 0, 1, "a")), S(2, 0, 1, "b"), G(3, 2, 3, "a"), G(3, 4, 5, "b"), G(3, 6, 7, "a")])).toBe("illegal");
    // An unknown DEL explains a nil read, once.
    expect(verdict([S(1, 0, 1, "a"), U({ client: 2, call: 2, ret: 3, key: "x", kind: "del", outcome: "ok" }), G(3, 4, 5, null)])).toBe("ok");
  });

  test("the anomalies a faulty cluster produces are caught", () => {
    // A lost acknowledged write: after a failover every node reads the value before it.
    expect(verdict([S(1, 0, 1, "a"), S(1, 2, 3, "b"), G(2, 10, 11, "a"), G(3, 12, 13, "a")])).toBe("illegal");
    // A deposed leader answering from its own state: a write acknowledged through the new leader,
    // then a read of the old value from the old leader (the stale read of an unsafe local read).
    expect(verdict([S(1, 0, 1, "a"), G(2, 2, 3, "a"), S(1, 4, 5, "b"), G(2, 6, 7, "a")])).toBe("illegal");
    // ... which stays illegal however many unknown writes of other values are open around it.
    expect(verdict([S(1, 0, 1, "a"), U(S(3, 1, 2, "c")), U(S(4, 3, 4, "d")), S(1, 4, 5, "b"), G(2, 6, 7, "a")])).toBe("illegal");
    // A deleted key coming back with its old value (an expiry or DEL undone by a failover).
    expect(verdict([S(1, 0, 1, "a"), D(1, 2, 3, 1), G(2, 4, 5, null), G(2, 6, 7, "a")])).toBe("illegal");
    // Two SET NX successes on one key across a failover, with no DEL between.
    expect(verdict([NX(1, 0, 1, "a", "OK"), G(2, 2, 3, "a"), NX(3, 4, 5, "b", "OK")])).toBe("illegal");
    // A write acknowledged twice in effect: a, b, then a again from one SET of a (a replayed entry).
    expect(verdict([S(1, 0, 1, "a"), S(2, 2, 3, "b"), G(3, 4, 5, "b"), G(3, 6, 7, "a")])).toBe("illegal");
  });

  test("an unknown write stays open to the end of the history", () => {
    // Its effect may show up long after everything else: here after a thousand time units and other writes.
    const h = [U(S(1, 0, 1, "late")), S(2, 2, 3, "b"), G(3, 4, 5, "b"), S(2, 500, 501, "c"), G(3, 502, 503, "c"), G(3, 1000, 1001, "late")];
    expect(verdict(h)).toBe("ok");
    // But once seen, it is the state until something overwrites it.
    expect(verdict([...h, G(3, 1002, 1003, "c")])).toBe("illegal");
    // An unknown SET NX may take effect only on an absent key, however late.
    expect(verdict([U(NX(1, 0, 1, "a", "OK")), S(2, 2, 3, "b"), G(3, 4, 5, "b"), G(3, 6, 7, "a")])).toBe("illegal");
    expect(verdict([U(NX(1, 0, 1, "a", "OK")), S(2, 2, 3, "b"), D(2, 4, 5, 1), G(3, 6, 7, "a")])).toBe("ok");
  });

  test("many unknown writes whose values nobody read: an illegal history is still decided", () => {
    // 40 timed-out writes open to the end, among 1,500 acknowledged operations, then one stale read.
    // Searched naively, every subset of the 40 is a state: 2^40. Merged (values nobody read are one
    // state; such writes are taken in call order), the search stays small.
    const h: Operation[] = [];
    let last: string | null = null;
    for (let i = 0, t = 0; i < 1500; i++, t += 2) {
      if (i % 37 === 0) h.push(U(S(i % 6, t, t + 1, `lost${i}`)));
      else if (i % 3 === 0) h.push(S(i % 6, t, t + 1, (last = `v${i}`)));
      else h.push(G(i % 6, t, t + 1, last));
    }
    expect(h.filter((o) => o.outcome === "unknown").length).toBe(41);
    expect(verdict(h)).toBe("ok");
    const r = checkHistory([...h, G(9, 5000, 5001, "v3")]);
    expect(r.result).toBe("illegal");
    if (r.result === "illegal") expect(r.explanation.state).toBe(last);
    // An unknown DEL and unknown SET NXs merge the same way, each kind on its own.
    const mixed = [...h, U(D(7, 10, 11, 0)), U(D(7, 20, 21, 0)), U(NX(8, 12, 13, "nx1", "OK")), U(NX(8, 30, 31, "nx2", "OK"))];
    expect(verdict(mixed)).toBe("ok");
    expect(verdict([...mixed, G(9, 5000, 5001, "v3")])).toBe("illegal");
    // A value read makes its write count on its own again: one lost write seen late is legal.
    expect(verdict([...h, G(9, 5000, 5001, "lost37")])).toBe("ok");
  });

  test("a read with an unknown outcome is dropped, whatever it carries", () => {
    expect(verdict([S(1, 0, 1, "a"), { ...G(2, 2, 3, "zzz"), outcome: "unknown" }])).toBe("ok");
  });

  test("an operation returning at the same time another is called counts as overlapping", () => {
    expect(verdict([S(1, 0, 5, "a"), G(2, 5, 6, null)])).toBe("ok");
    expect(verdict([S(1, 0, 4, "a"), G(2, 5, 6, null)])).toBe("illegal");
  });

  test("keys are checked separately, and the illegal key is named", () => {
    const h = [S(1, 0, 1, "a", "k1"), S(1, 0, 1, "b", "k2"), G(2, 2, 3, "a", "k1"), G(2, 4, 5, null, "k2"), G(3, 6, 7, "b", "k2")];
    const r = checkHistory(h);
    expect(r.result).toBe("illegal");
    if (r.result === "illegal") expect(r.explanation.key).toBe("k2");
    // A value written to one key never explains a read of another.
    expect(verdict([S(1, 0, 1, "a", "k1"), G(2, 2, 3, "a", "k2")])).toBe("illegal");
    expect(verdict([S(1, 0, 1, "a", "k1"), S(2, 0, 1, "b", "k2"), G(3, 2, 3, "a", "k1"), G(3, 2, 3, "b", "k2")])).toBe("ok");
  });

  test("past the step limit the answer is unknown, never linearizable", () => {
    const rand = prng(99);
    const h = generateHistory(rand, { clients: 8, keys: 1, ops: 200, values: 3 });
    expect(checkHistory(h).result).toBe("ok");
    const r = checkHistory(h, { maxSteps: 10 });
    expect(r.result).toBe("unknown");
    expect(r.steps).toBe(10);
    // An illegal key is still found when another key ran out of steps.
    const bad = [...h, S(9, 10_000, 10_001, "a", "other"), G(9, 10_002, 10_003, "b", "other")];
    expect(checkHistory(bad, { maxSteps: 10 }).result).toBe("illegal");
  });

  test("malformed input is refused", () => {
    expect(() => checkHistory([G(1, 5, 4, null)])).toThrow("returns before its call");
    expect(() => checkHistory([U(S(1, Number.NaN, 4, "a"))])).toThrow("finite call time");
    expect(() => checkHistory([{ client: 1, call: 0, ret: 1, key: "x", kind: "set", outcome: "ok" }])).toThrow("without arg");
  });
});

/** Brute force: every order of every subset of unknown-outcome ops, over the whole history (all keys at once). */
function bruteForce(history: readonly Operation[]): boolean {
  const ops = history.filter((o) => !(o.kind === "get" && o.outcome === "unknown"));
  const unknown = ops.map((o, i) => i).filter((i) => (ops[i] as Operation).outcome === "unknown");
  for (let mask = 0; mask < 1 << unknown.length; mask++) {
    const chosen = ops.filter((o, i) => o.outcome === "ok" || (mask & (1 << unknown.indexOf(i))) !== 0);
    if (anyLegalPermutation(chosen)) return true;
  }
  return false;
}

function anyLegalPermutation(ops: Operation[]): boolean {
  // Heap's algorithm over all n! orders.
  const a = ops.slice();
  const c = new Array<number>(a.length).fill(0);
  if (legalSequence(a)) return true;
  let i = 0;
  while (i < a.length) {
    if ((c[i] as number) < i) {
      const j = i % 2 === 0 ? 0 : (c[i] as number);
      [a[j], a[i]] = [a[i] as Operation, a[j] as Operation];
      if (legalSequence(a)) return true;
      c[i] = (c[i] as number) + 1;
      i = 0;
    } else {
      c[i] = 0;
      i++;
    }
  }
  return false;
}

/** Real-time order respected (nothing after an op that returned before it was called) and every reply right. */
function legalSequence(seq: readonly Operation[]): boolean {
  for (let i = 0; i < seq.length; i++) {
    for (let j = i + 1; j < seq.length; j++) {
      const later = seq[j] as Operation;
      if (later.outcome === "ok" && later.ret < (seq[i] as Operation).call) return false;
    }
  }
  const store = new Map<string, string>();
  for (const op of seq) {
    const cur = store.get(op.key) ?? null;
    const known = op.outcome === "ok";
    switch (op.kind) {
      case "get":
        if (cur !== op.result) return false;
        break;
      case "set":
        store.set(op.key, op.arg as string);
        break;
      case "del":
        if (known && op.result !== undefined && op.result !== (cur === null ? 0 : 1)) return false;
        store.delete(op.key);
        break;
      case "setnx":
        if (known && op.result !== (cur === null ? "OK" : null)) return false;
        if (cur === null) store.set(op.key, op.arg as string);
        break;
      case "incr": {
        if (cur !== null && !/^-?\d+$/.test(cur)) {
          if (known) return false;
          break;
        }
        const next = (cur === null ? 0 : Number(cur)) + 1;
        if (known && op.result !== next) return false;
        store.set(op.key, String(next));
        break;
      }
    }
  }
  return true;
}

describe("random histories from a real register run", () => {
  test("the brute force itself tells the hand-written cases apart", () => {
    expect(bruteForce([S(1, 0, 1, "a"), S(1, 2, 3, "b"), G(2, 4, 5, "a")])).toBe(false);
    expect(bruteForce([S(1, 0, 1, "a"), S(1, 2, 6, "b"), G(2, 4, 5, "a")])).toBe(true);
    expect(bruteForce([U(S(1, 0, 1, "a")), G(2, 5, 6, "a"), G(2, 7, 8, null)])).toBe(false);
    expect(bruteForce([U(S(1, 0, 1, "a")), G(2, 5, 6, null)])).toBe(true);
  });

  test("small histories: the checker agrees with brute force, original and mutated (400 seeds)", () => {
    let mutatedIllegal = 0;
    let mutatedTotal = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const rand = prng(seed);
      const h = generateHistory(rand, { clients: 3, keys: 2, ops: 7, pUnknown: 0.2, values: 4 });
      expect({ seed, result: verdict(h) }).toEqual({ seed, result: "ok" });
      expect({ seed, brute: bruteForce(h) }).toEqual({ seed, brute: true });
      const m = mutateOneRead(rand, h);
      if (!m) continue;
      mutatedTotal++;
      const got = verdict(m.history);
      const truth = bruteForce(m.history);
      // Every history flagged is truly non-linearizable, and every non-linearizable one is flagged.
      expect({ seed, got }).toEqual({ seed, got: truth ? "ok" : "illegal" });
      if (!truth) mutatedIllegal++;
    }
    expect(mutatedTotal).toBeGreaterThan(300);
    // Most changed reads are caught (some are legal: a concurrent write explains them).
    expect(mutatedIllegal / mutatedTotal).toBeGreaterThan(0.6);
  });

  test("larger histories: all linearizable as generated, a changed read is mostly caught (200 seeds)", () => {
    let caught = 0;
    let total = 0;
    for (let seed = 1000; seed < 1200; seed++) {
      const rand = prng(seed);
      const h = generateHistory(rand, { clients: 5, keys: 3, ops: 120, pUnknown: 0.1, values: 20 });
      expect({ seed, result: verdict(h) }).toEqual({ seed, result: "ok" });
      const m = mutateOneRead(rand, h);
      if (!m) continue;
      total++;
      const r = checkHistory(m.history);
      expect(r.result).not.toBe("unknown");
      if (r.result === "illegal") {
        caught++;
        expect(r.explanation.key).toBe((m.history[m.index] as Operation).key);
      }
    }
    expect(total).toBe(200);
    expect(caught / total).toBeGreaterThan(0.75);
  });

  test("the reductions for unknown writes never change a verdict (3,000 seeds, against the plain search)", () => {
    let illegal = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const rand = prng(seed);
      // Many unknown writes, few or many distinct values; INCR left out (it turns the merging off).
      const h = generateHistory(rand, { clients: 4, keys: 1, ops: 12 + (seed % 12), pUnknown: 0.35, values: seed % 2 ? 30 : 4 }).filter((o) => o.kind !== "incr");
      for (const x of [h, mutateOneRead(rand, h)?.history]) {
        if (!x) continue;
        const plain = checkHistory(x, { reduce: false }).result;
        expect({ seed, reduced: checkHistory(x).result }).toEqual({ seed, reduced: plain });
        if (plain === "illegal") illegal++;
      }
    }
    // Both answers occur often (removing INCRs makes some reads impossible, which is fine here).
    expect(illegal).toBeGreaterThan(1000);
    expect(illegal).toBeLessThan(5000);
  });

  test("a 3-key history of 2,000 operations from 10 clients checks in bounded steps", () => {
    const h = generateHistory(prng(7), { clients: 10, keys: 3, ops: 2000, pUnknown: 0.05, values: 50 });
    const t0 = performance.now();
    const r = checkHistory(h);
    const ms = performance.now() - t0;
    expect(r.result).toBe("ok");
    const m = mutateOneRead(prng(8), h);
    const t1 = performance.now();
    const r2 = checkHistory(m!.history);
    const ms2 = performance.now() - t1;
    expect(r2.result).not.toBe("unknown");
    console.log(`2,000 ops, 3 keys, 10 clients: linearizable in ${ms.toFixed(1)} ms (${r.steps} steps); one read changed: ${r2.result} in ${ms2.toFixed(1)} ms (${r2.steps} steps)`);
  });
});
