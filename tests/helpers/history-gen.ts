// Histories for testing the linearizability checker: built from a real sequential run of a register
// per key, with random overlapping intervals around each operation's linearization point, so every
// history it returns is linearizable by construction.
import type { Operation, OpKind } from "./linearizability.ts";

export interface GenOptions {
  readonly clients: number;
  readonly keys: number;
  readonly ops: number;
  /** Chance that a write's outcome is unknown to its client (it took effect later, or never). */
  readonly pUnknown?: number;
  /** Values are integers below this, as strings (small: the same value gets written twice). */
  readonly values?: number;
}

/** A linearizable history: each operation takes effect at a point inside its interval. */
export function generateHistory(rand: () => number, o: GenOptions): Operation[] {
  const int = (k: number): number => Math.floor(rand() * k);
  const clock = new Array<number>(o.clients).fill(0);
  type Draft = { op: Operation; at: number; applies: boolean };
  const drafts: Draft[] = [];
  for (let i = 0; i < o.ops; i++) {
    const client = int(o.clients);
    const call = (clock[client] as number) + int(5);
    const ret = call + 1 + int(20);
    const r = rand();
    const kind: OpKind = r < 0.45 ? "get" : r < 0.7 ? "set" : r < 0.8 ? "del" : r < 0.92 ? "setnx" : "incr";
    const key = `k${int(o.keys)}`;
    const arg = kind === "set" || kind === "setnx" ? String(int(o.values ?? 1000)) : undefined;
    let at = call + rand() * (ret - call);
    let applies = true;
    let outcome: "ok" | "unknown" = "ok";
    if (kind !== "get" && rand() < (o.pUnknown ?? 0)) {
      outcome = "unknown";
      applies = rand() < 0.5;
      at = call + rand() * 60; // possibly long after the client gave up
    }
    clock[client] = ret;
    const op: Operation = arg === undefined ? { client, call, ret: outcome === "ok" ? ret : Infinity, key, kind, outcome } : { client, call, ret: outcome === "ok" ? ret : Infinity, key, kind, arg, outcome };
    drafts.push({ op, at, applies });
  }
  // Run the register in linearization order and fill in each reply.
  const store = new Map<string, string>();
  const order = drafts.map((d, i) => i).sort((a, b) => (drafts[a] as Draft).at - (drafts[b] as Draft).at);
  const results = new Array<string | number | null | undefined>(drafts.length);
  for (const i of order) {
    const { op, applies } = drafts[i] as Draft;
    if (!applies) continue;
    const cur = store.get(op.key) ?? null;
    switch (op.kind) {
      case "get":
        results[i] = cur;
        break;
      case "set":
        store.set(op.key, op.arg as string);
        results[i] = "OK";
        break;
      case "del":
        store.delete(op.key);
        results[i] = cur === null ? 0 : 1;
        break;
      case "setnx":
        if (cur === null) store.set(op.key, op.arg as string);
        results[i] = cur === null ? "OK" : null;
        break;
      case "incr": {
        const next = (cur === null ? 0 : Number(cur)) + 1;
        store.set(op.key, String(next));
        results[i] = next;
        break;
      }
    }
  }
  return drafts.map((d, i) => (d.op.outcome === "ok" ? { ...d.op, result: results[i] ?? null } : d.op));
}

/**
 * The same history with one GET's reply changed to another value (a value written elsewhere in the
 * history, nil, or one never written), or undefined if it has no GET.
 */
export function mutateOneRead(rand: () => number, history: readonly Operation[]): { history: Operation[]; index: number } | undefined {
  const reads = history.map((op, i) => i).filter((i) => (history[i] as Operation).kind === "get" && (history[i] as Operation).outcome === "ok");
  if (reads.length === 0) return undefined;
  const index = reads[Math.floor(rand() * reads.length)] as number;
  const op = history[index] as Operation;
  const written = [...new Set(history.filter((o) => o.key === op.key && o.arg !== undefined).map((o) => o.arg as string))];
  const candidates: (string | null)[] = [null, "never-written", ...written].filter((v) => v !== op.result);
  const result = candidates[Math.floor(rand() * candidates.length)] as string | null;
  const out = history.slice();
  out[index] = { ...op, result };
  return { history: out, index };
}
