// Concurrent clients for fault tests: each holds one raw RESP connection to one node (clients are spread
// over the nodes), runs GET / SET / DEL / SET NX on a few keys with values unique in the run, one
// request at a time, and records every operation for the linearizability checker
// (tests/helpers/linearizability.ts), with times from one clock (performance.now() of this process).
//
// What a reply means for the history:
// - a reply: the operation happened (result recorded);
// - -UNCERTAIN, a timeout, a connection lost, any other error on a write: outcome unknown (recorded as such);
// - -CLUSTERDOWN / -TRYAGAIN: refused, did not happen (not recorded);
// - no reply to a read: it tells nothing (not recorded).
import type { Operation, OpKind } from "./linearizability.ts";
import { RawResp } from "./resp-raw.ts";

export interface RecordedOp extends Operation {
  /** The node's client port the operation went to. */
  readonly port: number;
  /** The raw reply (or why there is none), for reports. */
  readonly reply: string;
}

export interface WorkloadStats {
  invoked: number;
  ok: number;
  /** Writes whose outcome is unknown. */
  unknown: number;
  /** -CLUSTERDOWN / -TRYAGAIN replies. */
  refused: number;
  /** Reads with no usable reply. */
  readsFailed: number;
  /** Connections refused (node down) before a request could be sent. */
  connectFailures: number;
  /** Error replies other than the three the cluster promises, by first word, with one example each. */
  otherErrors: Map<string, { count: number; example: string }>;
}

export interface WorkloadOptions {
  /** Client ports of the nodes; client c talks to ports[c % ports.length]. */
  readonly ports: readonly number[];
  readonly clients: number;
  readonly keys: readonly string[];
  /** Seeded uniform source in [0, 1). */
  readonly rand: () => number;
  /** Stop after this long (ms) ... */
  readonly durationMs: number;
  /** ... or after this many operations invoked in all, whichever comes first. */
  readonly maxOps: number;
  /** A request with no reply within this is abandoned (its connection dropped). Default 1000. */
  readonly opTimeoutMs?: number;
  /** Pause between one client's operations (ms, uniform in [0, thinkMs)). Default 5. */
  readonly thinkMs?: number;
  /** Mix of GET / SET / DEL / SET NX weights. Default 50 / 25 / 10 / 15. */
  readonly mix?: { readonly get: number; readonly set: number; readonly del: number; readonly setnx: number };
  /** Set to stop the clients early (they finish the request in flight). */
  readonly stop?: { stopped: boolean };
  /** Label of values written, so two runs never share one. */
  readonly tag?: string;
}

export function newStats(): WorkloadStats {
  return { invoked: 0, ok: 0, unknown: 0, refused: 0, readsFailed: 0, connectFailures: 0, otherErrors: new Map() };
}

type Outcome = { kind: "ok"; result: string | number | null } | { kind: "refused" } | { kind: "unknown"; why: string };

/** Interprets a reply to `kind`; throws for a reply that no correct server sends (a protocol bug). */
export function interpret(kind: OpKind, reply: string, stats: WorkloadStats): Outcome {
  if (reply.startsWith("-")) {
    const word = reply.slice(1).split(/[\s\r]/, 1)[0] ?? "";
    if (word === "CLUSTERDOWN" || word === "TRYAGAIN") return { kind: "refused" };
    if (word !== "UNCERTAIN") {
      const e = stats.otherErrors.get(word);
      if (e) e.count++;
      else stats.otherErrors.set(word, { count: 1, example: reply.trimEnd() });
    }
    return { kind: "unknown", why: reply.trimEnd() };
  }
  switch (kind) {
    case "get":
    case "setnx":
      if (reply === "$-1\r\n" || reply === "_\r\n") return { kind: "ok", result: null };
      if (kind === "setnx" && reply === "+OK\r\n") return { kind: "ok", result: "OK" };
      if (kind === "get" && reply.startsWith("$")) {
        const eol = reply.indexOf("\r\n");
        return { kind: "ok", result: reply.slice(eol + 2, reply.length - 2) };
      }
      break;
    case "set":
      if (reply === "+OK\r\n") return { kind: "ok", result: "OK" };
      break;
    case "del":
      if (/^:[01]\r\n$/.test(reply)) return { kind: "ok", result: Number(reply.slice(1, -2)) };
      break;
    case "incr":
      if (/^:-?\d+\r\n$/.test(reply)) return { kind: "ok", result: Number(reply.slice(1, -2)) };
      break;
  }
  throw new Error(`unexpected reply to ${kind.toUpperCase()}: ${JSON.stringify(reply)}`);
}

function pick(rand: () => number, mix: NonNullable<WorkloadOptions["mix"]>): Exclude<OpKind, "incr"> {
  const total = mix.get + mix.set + mix.del + mix.setnx;
  let r = rand() * total;
  if ((r -= mix.get) < 0) return "get";
  if ((r -= mix.set) < 0) return "set";
  if ((r -= mix.del) < 0) return "del";
  return "setnx";
}

/**
 * One request on a connection (opened if needed). Returns the reply, or a string starting with "!"
 * when there is none (the connection is then dropped).
 */
export class OneNodeConn {
  private conn: RawResp | null = null;
  constructor(readonly port: number) {}

  /** Opens the connection if there is none; false if the node refused it. */
  async ready(timeoutMs: number): Promise<boolean> {
    if (this.conn) return true;
    try {
      this.conn = await Promise.race([
        RawResp.connect(this.port),
        Bun.sleep(timeoutMs).then(() => {
          throw new Error("connect timeout");
        }),
      ]);
      return true;
    } catch {
      return false;
    }
  }

  async call(argv: readonly string[], timeoutMs: number): Promise<string> {
    const c = this.conn;
    if (!c) return "!not connected";
    try {
      const [r] = await c.call([argv], timeoutMs);
      return r as string;
    } catch (e) {
      this.drop();
      return `!${(e as Error).message}`;
    }
  }

  drop(): void {
    this.conn?.close();
    this.conn = null;
  }
}

/** Runs the clients to the end (duration, op count or stop flag); returns every recorded operation. */
export async function runWorkload(opts: WorkloadOptions, stats: WorkloadStats = newStats()): Promise<{ history: RecordedOp[]; stats: WorkloadStats }> {
  const history: RecordedOp[] = [];
  const mix = opts.mix ?? { get: 50, set: 25, del: 10, setnx: 15 };
  const opTimeoutMs = opts.opTimeoutMs ?? 1000;
  const thinkMs = opts.thinkMs ?? 5;
  const t0 = performance.now();
  const tag = opts.tag ?? "v";
  let seq = 0;
  const more = (): boolean => !opts.stop?.stopped && stats.invoked < opts.maxOps && performance.now() - t0 < opts.durationMs;

  const client = async (id: number): Promise<void> => {
    const port = opts.ports[id % opts.ports.length] as number;
    const conn = new OneNodeConn(port);
    let backoff = 20;
    while (more()) {
      if (!(await conn.ready(opTimeoutMs))) {
        stats.connectFailures++;
        await Bun.sleep(backoff * (0.5 + opts.rand() / 2));
        backoff = Math.min(backoff * 2, 300);
        continue;
      }
      const key = opts.keys[Math.floor(opts.rand() * opts.keys.length)] as string;
      const kind = pick(opts.rand, mix);
      const value = `${tag}${id}.${++seq}`;
      const argv =
        kind === "get" ? ["GET", key] : kind === "set" ? ["SET", key, value] : kind === "del" ? ["DEL", key] : ["SET", key, value, "NX"];
      stats.invoked++;
      const call = performance.now();
      const reply = await conn.call(argv, opTimeoutMs);
      const ret = performance.now();
      const base = { client: id, call, key, kind, port, reply: reply.trimEnd(), ...(kind === "set" || kind === "setnx" ? { arg: value } : {}) };
      let outcome: Outcome;
      if (reply.startsWith("!")) outcome = { kind: "unknown", why: reply };
      else outcome = interpret(kind, reply, stats);
      if (outcome.kind === "ok") {
        stats.ok++;
        history.push({ ...base, ret, outcome: "ok", result: outcome.result });
        backoff = 20;
      } else if (outcome.kind === "refused") {
        stats.refused++;
        await Bun.sleep(backoff * (0.5 + opts.rand() / 2));
        backoff = Math.min(backoff * 2, 300);
      } else if (kind === "get") {
        stats.readsFailed++;
      } else {
        stats.unknown++;
        history.push({ ...base, ret: Infinity, outcome: "unknown" });
        // A node that did not answer: give it a moment before the next request.
        await Bun.sleep(50 + opts.rand() * 100);
      }
      if (thinkMs > 0) await Bun.sleep(opts.rand() * thinkMs);
    }
    conn.drop();
  };
  await Promise.all(Array.from({ length: opts.clients }, (_, i) => client(i)));
  return { history, stats };
}

/** A one-line summary of the stats. */
export function formatStats(s: WorkloadStats): string {
  const other = [...s.otherErrors].map(([w, e]) => `${w} x${e.count} (${e.example})`).join("; ");
  return `${s.invoked} ops invoked, ${s.ok} ok, ${s.unknown} writes with unknown outcome, ${s.refused} refused (CLUSTERDOWN/TRYAGAIN), ${s.readsFailed} reads failed, ${s.connectFailures} connects refused${other ? `, other errors: ${other}` : ""}`;
}

/**
 * One GET or SET of `key` (each SET a new value, `<key>.<n>`) on a connection, recorded in `history`
 * under the workload's rules (an unknown SET stays open forever; an unanswered GET is dropped).
 * Resolves to the op when it was acknowledged, else null (not connected, refused, unknown).
 */
export function keyOps(key: string, history: RecordedOp[], stats: WorkloadStats): (conn: OneNodeConn, client: number, kind: "get" | "set", timeoutMs: number) => Promise<RecordedOp | null> {
  let seq = 0;
  return async (conn, client, kind, timeoutMs) => {
    if (!(await conn.ready(1000))) return null;
    const arg = `${key}.${++seq}`;
    const call = performance.now();
    const reply = await conn.call(kind === "get" ? ["GET", key] : ["SET", key, arg], timeoutMs);
    const ret = performance.now();
    const base = { client, call, key, kind, port: conn.port, reply: reply.trimEnd(), ...(kind === "set" ? { arg } : {}) };
    const o = reply.startsWith("!") ? ({ kind: "unknown" } as const) : interpret(kind, reply, stats);
    let rec: RecordedOp | null = null;
    if (o.kind === "ok") rec = { ...base, ret, outcome: "ok", result: o.result };
    else if (o.kind === "unknown" && kind === "set") rec = { ...base, ret: Infinity, outcome: "unknown" };
    if (rec) history.push(rec);
    return rec?.outcome === "ok" ? rec : null;
  };
}
