// A linearizability checker for key-value histories recorded from outside (black box): Wing & Gong's
// search over the order of operations, with Lowe's memoisation of (operations linearized, state), one
// key at a time (a history of independent registers is linearizable iff each key's sub-history is).
// Writes with an unknown outcome stay open to the end of the history, which makes the search exponential
// in their number on a history that is not linearizable. Two reductions keep it polynomial when their
// values are never read (the common case: a timed-out write that did not take effect, or was overwritten
// unseen): every value no read returned is one and the same state ("some value nobody saw": GET never
// matches it, DEL and SET NX only see that the key exists), and such unknown writes of one kind are
// interchangeable, so they are linearized in the order of their calls (any legal order using k of them
// stays legal with the k called first in their places: each was called no later than the one it replaces).
// The memo then counts how many of each kind were used, and a configuration that used more of them than
// one already explored, with the same other operations and state, is not explored again (whatever it
// can do, the one that used fewer can do too). So that the frugal configurations come first, each scan
// of the candidates tries the other operations first and those interchangeable writes only after.
// Pure: no I/O, no clock, no global randomness (tests/arch.test.ts checks); times are plain numbers.

/** The commands the model knows. A GET, SET, DEL, SET NX or INCR on one key. */
export type OpKind = "get" | "set" | "del" | "setnx" | "incr";

/**
 * One client operation. `call` and `ret` are the times the client sent the request and received the
 * reply (any unit, from one clock). `outcome: "unknown"` is a request whose effect is unknown (a
 * timeout, -UNCERTAIN, a dropped connection): it may have taken effect at any time after its call, or
 * never; its `ret` and `result` are ignored. A read with an unknown outcome tells nothing and is dropped.
 *
 * `result` when the outcome is "ok":
 * - get: the value, or null for a missing key;
 * - set: ignored (OK);
 * - del: the number of keys removed (0 or 1), or undefined to leave it unchecked;
 * - setnx: "OK" if it set the key, null if the key existed (SET key v NX's reply);
 * - incr: the new value (a number). Only successful INCRs are recorded: an error reply is not modelled.
 */
export interface Operation {
  readonly client: number | string;
  readonly call: number;
  readonly ret: number;
  readonly key: string;
  readonly kind: OpKind;
  /** The value written by set and setnx. */
  readonly arg?: string;
  readonly outcome: "ok" | "unknown";
  readonly result?: string | number | null;
}

/** Steps (one candidate operation tried, or one backtrack) the search may take on one key before giving up. */
export const MAX_STEPS = 2_000_000;

export interface CheckOptions {
  /** Replaces MAX_STEPS (tests use a small one to show the limit works). */
  readonly maxSteps?: number;
  /** false: search without the reductions for unknown writes (the plain search, a reference for tests). */
  readonly reduce?: boolean;
}

/** Why a key's sub-history is not linearizable: the furthest the search got. */
export interface Explanation {
  readonly key: string;
  /** The longest order found that respects real time and the register's rules, oldest first. */
  readonly linearized: readonly Operation[];
  /** The register's value after `linearized` (null: absent). */
  readonly state: string | null;
  /** The operation that returned earliest among those not linearized: no legal order placed it in time. */
  readonly blocking: Operation;
  /** Every known-outcome operation left, called before `blocking` returned: the candidates that did not fit. */
  readonly pending: readonly Operation[];
}

export type CheckResult =
  | { readonly result: "ok"; readonly steps: number }
  | { readonly result: "illegal"; readonly steps: number; readonly explanation: Explanation; readonly message: string }
  /** The step limit was reached before an answer: never read as "linearizable". */
  | { readonly result: "unknown"; readonly steps: number; readonly key: string; readonly message: string };

/** The register's next value after `op` from `state`, or undefined if `op`'s reply is impossible there. */
export function step(state: string | null, op: Operation): string | null | undefined {
  const known = op.outcome === "ok";
  switch (op.kind) {
    case "get":
      return !known || op.result === state ? state : undefined;
    case "set":
      return argOf(op);
    case "del":
      if (!known || op.result === undefined) return null;
      return op.result === (state === null ? 0 : 1) ? null : undefined;
    case "setnx":
      if (state === null) return !known || op.result === "OK" ? argOf(op) : undefined;
      return !known || op.result === null ? state : undefined;
    case "incr": {
      const n = state === null ? 0 : integerOf(state);
      if (n === undefined) return known ? undefined : state; // an error reply changes nothing
      const next = n + 1;
      if (known && op.result !== next) return undefined;
      return String(next);
    }
  }
}

function argOf(op: Operation): string {
  if (op.arg === undefined) throw new Error(`${op.kind} without arg: ${formatOp(op)}`);
  return op.arg;
}

function integerOf(s: string): number | undefined {
  if (!/^-?(0|[1-9][0-9]{0,15})$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

export function formatOp(op: Operation): string {
  const ret = op.outcome === "unknown" ? "?" : String(op.ret);
  const arg = op.arg === undefined ? "" : ` ${JSON.stringify(op.arg)}`;
  const res = op.outcome === "unknown" ? "unknown" : JSON.stringify(op.result ?? null);
  return `[c${op.client} ${op.call}..${ret}] ${op.kind.toUpperCase()} ${op.key}${arg} -> ${res}`;
}

/** Checks the whole history, key by key. The first illegal key wins; else a key past the limit makes it unknown. */
export function checkHistory(history: readonly Operation[], options: CheckOptions = {}): CheckResult {
  const byKey = new Map<string, Operation[]>();
  for (const op of history) {
    if (!Number.isFinite(op.call)) throw new Error(`operation without a finite call time: ${formatOp(op)}`);
    if (!(op.call <= op.ret) && op.outcome === "ok") throw new Error(`operation returns before its call: ${formatOp(op)}`);
    if (op.kind === "get" && op.outcome === "unknown") continue;
    let list = byKey.get(op.key);
    if (!list) byKey.set(op.key, (list = []));
    list.push(op);
  }
  const maxSteps = options.maxSteps ?? MAX_STEPS;
  let steps = 0;
  let unknown: CheckResult | undefined;
  for (const [key, ops] of byKey) {
    const r = checkKey(key, ops, maxSteps, options.reduce ?? true);
    steps += r.steps;
    if (r.result === "illegal") return { ...r, steps };
    if (r.result === "unknown") unknown ??= r;
  }
  if (unknown) return { ...unknown, steps };
  return { result: "ok", steps };
}

/** Entry list for one key: a call and a return entry per operation, in time order, doubly linked. */
function checkKey(key: string, original: readonly Operation[], maxSteps: number, reduce: boolean): CheckResult {
  const n = original.length;
  if (n === 0) return { result: "ok", steps: 0 };
  // Values no read returned all become `unseen` (one state); a string that no read returned either.
  // Not on a key with INCR, whose result depends on the value.
  const observed = new Set<string>();
  for (const op of original) if (op.kind === "get" && op.outcome === "ok" && typeof op.result === "string") observed.add(op.result);
  let unseen = "\u0000unseen";
  while (observed.has(unseen)) unseen += "\u0000";
  const merge = reduce && !original.some((op) => op.kind === "incr");
  const ops = !merge ? original : original.map((op) => (op.arg !== undefined && (op.kind === "set" || op.kind === "setnx") && !observed.has(op.arg) ? { ...op, arg: unseen } : op));
  // Unknown writes whose effect does not depend on their value's identity, by kind, in call order:
  // prior[i] is the one of the same kind called just before i (it must be linearized before i is), or -1.
  const prior = new Int32Array(n).fill(-1);
  /** 0, 1, 2 for an interchangeable unknown SET, SET NX, DEL; -1 for the others. */
  const classOf = new Int8Array(n).fill(-1);
  const CLASSES = ["set", "setnx", "del"];
  const lastOfClass = new Map<string, number>();
  const byCall = Array.from({ length: n }, (_, i) => i).sort((a, b) => (ops[a] as Operation).call - (ops[b] as Operation).call || a - b);
  for (const i of byCall) {
    const op = ops[i] as Operation;
    if (op.outcome !== "unknown" || !reduce) continue;
    const cls = op.kind === "del" ? "del" : (op.kind === "set" || op.kind === "setnx") && op.arg === unseen ? op.kind : undefined;
    if (cls === undefined) continue;
    prior[i] = lastOfClass.get(cls) ?? -1;
    lastOfClass.set(cls, i);
    classOf[i] = CLASSES.indexOf(cls);
  }
  // Entries 0..n-1 are calls, n..2n-1 returns; `head` is the sentinel. An unknown outcome returns at +Infinity.
  const time = (e: number): number => {
    const op = ops[e % n] as Operation;
    if (e < n) return op.call;
    return op.outcome === "unknown" ? Infinity : op.ret;
  };
  const order = Array.from({ length: 2 * n }, (_, i) => i);
  // Equal times: calls first (the operations overlap), which never rejects a linearizable history.
  order.sort((a, b) => time(a) - time(b) || (a < n ? 0 : 1) - (b < n ? 0 : 1) || a - b);
  const head = 2 * n;
  const next = new Int32Array(2 * n + 1).fill(-1);
  const prev = new Int32Array(2 * n + 1).fill(-1);
  let last = head;
  for (const e of order) {
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  const lift = (c: number): void => {
    const r = c + n;
    next[prev[c] as number] = next[c] as number;
    if (next[c] !== -1) prev[next[c] as number] = prev[c] as number;
    next[prev[r] as number] = next[r] as number;
    if (next[r] !== -1) prev[next[r] as number] = prev[r] as number;
  };
  const unlift = (c: number): void => {
    const r = c + n;
    if (next[r] !== -1) prev[next[r] as number] = r;
    next[prev[r] as number] = r;
    if (next[c] !== -1) prev[next[c] as number] = c;
    next[prev[c] as number] = c;
  };

  // Memo of (linearized set, state) already explored: Zobrist hash of the set, buckets compared exactly.
  // `bits` holds every operation linearized; `plain` the same without the interchangeable ones, whose
  // number per kind is in `used` (they are taken in call order, so the number says which).
  const words = (n + 31) >>> 5;
  const bits = new Uint32Array(words);
  const plain = new Uint32Array(words);
  const used = new Int32Array(CLASSES.length);
  const zob = new Uint32Array(n);
  let seed = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    zob[i] = classOf[i] === -1 ? seed >>> 0 : 0;
  }
  const stateIds = new Map<string | null, number>([[null, 0]]);
  const stateId = (s: string | null): number => {
    let id = stateIds.get(s);
    if (id === undefined) stateIds.set(s, (id = stateIds.size));
    return id;
  };
  const memo = new Map<number, { plain: Uint32Array; state: number; used: Int32Array }[]>();
  /** Records (plain, state, used) and returns true unless it, or one that used no more of each kind, was seen. */
  const remember = (hash: number, state: number): boolean => {
    const h = (hash ^ Math.imul(state + 1, 0x85ebca77)) >>> 0;
    let bucket = memo.get(h);
    if (!bucket) memo.set(h, (bucket = []));
    outer: for (const seen of bucket) {
      if (seen.state !== state) continue;
      for (let w = 0; w < words; w++) if (seen.plain[w] !== plain[w]) continue outer;
      for (let k = 0; k < used.length; k++) if ((seen.used[k] as number) > (used[k] as number)) continue outer;
      return false;
    }
    bucket.push({ plain: plain.slice(), state, used: used.slice() });
    return true;
  };
  const mark = (i: number, on: boolean): void => {
    const w = i >>> 5;
    const b = 1 << (i & 31);
    const cls = classOf[i] as number;
    if (on) {
      bits[w]! |= b;
      if (cls === -1) plain[w]! |= b;
      else used[cls]!++;
    } else {
      bits[w]! &= ~b;
      if (cls === -1) plain[w]! &= ~b;
      else used[cls]!--;
    }
  };

  let knownLeft = 0;
  for (const op of ops) if (op.outcome === "ok") knownLeft++;

  // The search: `stack` holds the call entries linearized so far, with the state before each. A scan of
  // the candidates has two passes: pass 0 tries the operations of no class, pass 1 the interchangeable ones.
  const stack: number[] = [];
  let pass = 0;
  const stateBefore: (string | null)[] = [];
  let state: string | null = null;
  let hash = 0;
  let steps = 0;
  let best: { linearized: number[]; state: string | null; blocking: number; knownLeft: number } | undefined;
  let entry = next[head] as number;
  while (knownLeft > 0) {
    if (steps >= maxSteps) {
      return { result: "unknown", steps, key, message: `key ${JSON.stringify(key)}: step limit ${maxSteps} reached (${n} operations); not known to be linearizable` };
    }
    if (entry !== -1 && entry < n) {
      if ((classOf[entry] === -1) !== (pass === 0)) {
        entry = next[entry] as number;
        continue;
      }
      steps++;
      const op = ops[entry] as Operation;
      const first = prior[entry] as number;
      const to: string | null | undefined = first !== -1 && ((bits[first >>> 5] as number) & (1 << (first & 31))) === 0 ? undefined : step(state, op);
      if (to !== undefined) {
        mark(entry, true);
        const h = (hash ^ (zob[entry] as number)) >>> 0;
        if (remember(h, stateId(to))) {
          stack.push(entry);
          stateBefore.push(state);
          state = to;
          hash = h;
          if (op.outcome === "ok") knownLeft--;
          lift(entry);
          entry = next[head] as number;
          pass = 0;
          continue;
        }
        mark(entry, false);
      }
      entry = next[entry] as number;
      continue;
    }
    // A return entry: the operation it closes could not be linearized in front of it. (Known operations
    // return at finite times, before every unknown one, so the scan never runs off the end here.)
    if (entry === -1) throw new Error("linearizability search ran off the entry list with known operations left");
    steps++;
    // The furthest point: the most operations of known outcome linearized (the first order found that far).
    if (!best || knownLeft < best.knownLeft) best = { linearized: stack.slice(), state, blocking: entry, knownLeft };
    if (pass === 0) {
      pass = 1;
      entry = next[head] as number;
      continue;
    }
    if (stack.length === 0) break;
    const c = stack.pop() as number;
    state = stateBefore.pop() as string | null;
    mark(c, false);
    hash = (hash ^ (zob[c] as number)) >>> 0;
    if ((ops[c] as Operation).outcome === "ok") knownLeft++;
    unlift(c);
    entry = next[c] as number;
    pass = classOf[c] === -1 ? 0 : 1;
  }
  if (knownLeft === 0) return { result: "ok", steps };
  // The real value at the end of the longest order (the search's own state may be `unseen`).
  let real: string | null = null;
  for (const i of best!.linearized) real = step(real, original[i] as Operation) ?? real;
  return { result: "illegal", steps, ...explain(key, original, n, { ...best!, state: real }) };
}

function explain(
  key: string,
  ops: readonly Operation[],
  n: number,
  best: { linearized: number[]; state: string | null; blocking: number },
): { explanation: Explanation; message: string } {
  const done = new Set(best.linearized);
  const blocking = ops[best.blocking - n] as Operation;
  const pending = ops.filter((op, i) => !done.has(i) && op.outcome === "ok" && op.call <= blocking.ret);
  const linearized = best.linearized.map((i) => ops[i] as Operation);
  const message = [
    `key ${JSON.stringify(key)} is not linearizable.`,
    `Longest legal order (${linearized.length} of ${ops.length} operations), ending with the value ${JSON.stringify(best.state)}:`,
    ...linearized.slice(-10).map((op) => `  ${formatOp(op)}`),
    `then none of these fits before ${formatOp(blocking)} returns:`,
    ...pending.slice(0, 10).map((op) => `  ${formatOp(op)}`),
  ].join("\n");
  return { explanation: { key, linearized, state: best.state, blocking, pending }, message };
}
