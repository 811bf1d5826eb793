// The socket fuzzer: rounds of 16-32 connections at once against a running kv, each sending a
// generated input (whole, in random chunks, or byte by byte) and then reading, closing, or
// half-closing. Each connection must get exactly the replies the oracle says it is owed, then a
// close where one is owed, within HANG_MS; after each round the process must be alive, answer
// PING on a fresh connection, and keep its RSS under the bound.
import type { Socket } from "bun";
import { ErrorReply, NEED_MORE, ReplyParser } from "../../src/resp/reply-parser.ts";
import type { RequestLimits } from "../../src/resp/request-parser.ts";
import { connectionInput, Rng, type GenLimits } from "./gen.ts";
import { expectedFor, type Expected } from "./oracle.ts";
import { replyLimits } from "./inproc-fuzz.ts";

/** A connection that has neither its replies nor its close after this long is hung. */
export const HANG_MS = 15_000;

/** Lines in the server's output that mean a throw reached the top or an invariant broke. */
export const CRASH_OUTPUT = /internal error|invariant broken|uncaught|unhandled|TypeError|RangeError|ReferenceError|SyntaxError|panic|Segmentation/i;

export interface FuzzTarget {
  port: number;
  pid: number;
  alive(): boolean;
  output(): string;
}

export interface FuzzOptions {
  seed: number;
  /** Stop after this many rounds or this many ms, whichever comes first. */
  roundsMax: number;
  msMax: number;
  limits: RequestLimits;
  gen: GenLimits;
  /** The RSS bound, in bytes, checked after every round (VmRSS) and at the end (VmHWM). */
  rssBytesMax: number;
  log?: (line: string) => void;
  /**
   * Also check replies after a half-close (the client shuts its sending side at once and reads):
   * every reply owed, then the close. On in the test; FUZZ_HALFCLOSE_REPLIES=0 turns it off.
   */
  halfCloseReplies?: boolean;
}

export interface FuzzStats {
  rounds: number;
  connections: number;
  /** Commands the oracle counted as complete (each owed a reply). */
  commands: number;
  bytesSent: number;
  protocolErrors: number;
  quits: number;
  /** Connections closed or half-closed mid-input on purpose (no reply check). */
  abrupt: number;
  rssPeakBytes: number;
  outputLimitCloses: number;
  /** Closes after QUIT or a protocol error that reached the client as a reset. */
  resets: number;
}

export class FuzzFailure extends Error {}

type EndMode = "read" | "abrupt" | "truncate" | "halfclose-after" | "halfclose-now";

/** VmRSS and VmHWM of a process, in bytes. */
export function readRss(pid: number): { rss: number; hwm: number } {
  const text = require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8") as string;
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

function preview(bytes: string): string {
  const s = bytes.length > 1500 ? bytes.slice(0, 1200) + `...(${bytes.length} bytes)...` + bytes.slice(-200) : bytes;
  return JSON.stringify(s);
}

interface ConnResult {
  failure?: string;
  commands: number;
  bytes: number;
  protocolError: boolean;
  quit: boolean;
  abrupt: boolean;
  /** 1 when the server's close after QUIT or a protocol error came as a reset (see fuzzConnection). */
  resets?: number;
}

/** One client: connect, send, then do what `mode` says, checking what comes back against `exp`. */
async function fuzzConnection(target: FuzzTarget, rng: Rng, opts: FuzzOptions, outputLimitCloses: () => number): Promise<ConnResult> {
  const { bytes } = connectionInput(rng, opts.gen, rng.range(1, 24));
  const exp: Expected = expectedFor(bytes, opts.limits);
  const r = rng.next();
  const mode: EndMode = r < 0.64 ? "read" : r < 0.73 ? "abrupt" : r < 0.82 ? "truncate" : r < 0.91 ? "halfclose-after" : "halfclose-now";
  const res: ConnResult = { commands: exp.replies, bytes: bytes.length, protocolError: exp.end === "error", quit: exp.end === "quit", abrupt: mode !== "read" && mode !== "halfclose-after" };

  const parser = new ReplyParser(replyLimits(opts.limits));
  const st = { count: 0, closed: false, closeError: "", writeFailed: false, last: undefined as unknown, badReply: "", wake: () => {} };
  let drained = () => {};
  const socket: Socket<undefined> = await Bun.connect({
    hostname: "127.0.0.1",
    port: target.port,
    socket: {
      data(_s, chunk) {
        try {
          parser.push(chunk);
          for (;;) {
            const v = parser.next("latin1");
            if (v === NEED_MORE) break;
            st.count++;
            st.last = v;
          }
        } catch (e) {
          st.badReply = (e as Error).message;
        }
        st.wake();
      },
      drain() {
        drained();
      },
      close(_s, err) {
        st.closed = true;
        if (err !== undefined) st.closeError = (err as { code?: string }).code ?? err.message;
        st.wake();
      },
      error(_s, err) {
        st.closed = true;
        st.closeError = (err as { code?: string }).code ?? err.message;
        st.wake();
      },
    },
  });

  const data = Buffer.from(bytes, "latin1");
  const sendLen = mode === "truncate" ? rng.int(data.length + 1) : data.length;
  if (sendLen < data.length) res.commands = expectedFor(bytes.slice(0, sendLen), opts.limits).replies;
  // Chunking: all at once, random pieces (at most ~1000 of them), or (short inputs) one byte at a time.
  const w = rng.next();
  const piece = w < 0.5 ? sendLen : w < 0.9 || sendLen > 512 ? Math.max(rng.range(1, 64), Math.ceil(sendLen / 1000)) : 1;
  let lastProgressMs = Date.now();
  let off = 0;
  while (off < sendLen && !st.closed) {
    const end = Math.min(sendLen, off + piece);
    const n = socket.write(data.subarray(off, end));
    if (n < 0) {
      st.writeFailed = true;
      break;
    }
    off += n;
    if (n > 0) lastProgressMs = Date.now();
    if (off < end) {
      // The kernel is full: wait for drain (bounded).
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        drained = () => {
          clearTimeout(t);
          resolve();
        };
      });
      if (Date.now() - lastProgressMs > HANG_MS) {
        const failure = `hang: the server took no byte for ${HANG_MS} ms (${off}/${sendLen} taken, ${st.count} replies)\n${await hangReport(target.port)}`;
        socket.terminate();
        return { ...res, failure };
      }
    } else if (piece < sendLen && rng.chance(0.1)) {
      await Bun.sleep(rng.int(3));
    }
  }

  if (mode === "abrupt" || mode === "truncate") {
    if (rng.chance(0.5)) socket.terminate();
    else socket.end();
    return res;
  }
  if (mode === "halfclose-now") {
    // The client stops sending at once and reads: every reply owed, then the close. In Bun a
    // client socket's end() closes both directions (replies owed are lost, as they would be to
    // any client that closes); shutdown() sends the FIN alone.
    socket.shutdown();
    if (!opts.halfCloseReplies) return res;
    res.abrupt = false;
  }

  // Wait for every reply owed, and for the close where one is owed (HANG_MS after the last byte sent).
  const deadline = Date.now() + HANG_MS;
  const owed = exp.replies + (exp.end === "error" ? 1 : 0);
  const mustClose = exp.end !== "open" || mode === "halfclose-now";
  const done = () => st.badReply !== "" || st.count > owed || (st.count >= owed && (!mustClose || st.closed)) || (st.closed && st.count < owed);
  while (!done() && Date.now() < deadline) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 100);
      st.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
  // A short look for replies beyond those owed.
  if (done() && !st.closed && st.badReply === "") await Bun.sleep(rng.chance(0.1) ? 20 : 0);

  let failure: string | undefined;
  if (st.badReply !== "") failure = `malformed reply from the server: ${st.badReply}`;
  else if (st.count > owed) failure = `${st.count} replies, ${owed} owed`;
  else if (st.count < owed && st.closed) {
    // Allowed early closes: replies produced as writes applied passed the output limit; or a
    // reset after QUIT or a protocol error while this client was still sending (the kernel
    // answers bytes nobody will read with RST, and the client's kernel then drops replies
    // not yet read: TCP, not the server).
    const reset = exp.end !== "open" && (/ECONNRESET|reset/i.test(st.closeError) || st.writeFailed);
    if (reset) res.resets = 1;
    else if (outputLimitCloses() === 0) failure = `closed after ${st.count} of ${owed} replies (close error: ${st.closeError || "none"}, write failed: ${st.writeFailed})`;
  } else if (st.count < owed) failure = `hang: ${st.count} of ${owed} replies after ${HANG_MS} ms`;
  else if (mustClose && !st.closed) failure = `not closed within ${HANG_MS} ms after ${exp.end === "error" ? "a protocol error" : exp.end === "quit" ? "QUIT" : "a half-close"}`;
  else if (!mustClose && st.closed) failure = "closed by the server without a protocol error or QUIT";
  else if (exp.end === "error" && !(st.last instanceof ErrorReply && st.last.message.startsWith("ERR Protocol error"))) {
    failure = `last reply is not a protocol error: ${JSON.stringify(st.last)}`;
  }
  if (failure !== undefined) {
    // Before this connection goes: what the server says about itself and its clients.
    if (failure.startsWith("hang")) failure += `\n--- a fresh connection sends PING, SET, INFO persistence, CLIENT LIST ---\n${await hangReport(target.port)}\n---`;
    socket.terminate();
    return { ...res, failure: `${failure} (expected ${JSON.stringify(exp)}, mode ${mode}); input ${preview(bytes)}` };
  }
  if (mode === "halfclose-after" || rng.chance(0.5)) socket.end();
  else socket.terminate();
  return res;
}

/** Sends `wire` on a fresh connection and returns what came back once `enough` holds or timeoutMs passed. */
async function askFresh(port: number, wire: string, enough: (got: string) => boolean, timeoutMs: number): Promise<string | null> {
  let got = "";
  let resolve = () => {};
  const done = new Promise<void>((r) => (resolve = r));
  let socket: Socket<undefined>;
  try {
    socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data(_s, chunk) {
          got += chunk.toString("latin1");
          if (enough(got)) resolve();
        },
        close() {
          resolve();
        },
        error() {
          resolve();
        },
      },
    });
  } catch {
    return null;
  }
  socket.write(wire);
  const t = setTimeout(resolve, timeoutMs);
  await done;
  clearTimeout(t);
  socket.terminate();
  return got;
}

/** PING on a fresh connection, bounded: true when +PONG comes back. */
export async function pingFresh(port: number, timeoutMs = 5_000): Promise<boolean> {
  return (await askFresh(port, "*1\r\n$4\r\nPING\r\n", (g) => g.includes("\r\n"), timeoutMs)) === "+PONG\r\n";
}

/** What a hang looks like from outside: does a read answer, does a write, what do INFO and CLIENT LIST say. */
async function hangReport(port: number): Promise<string> {
  const got = await askFresh(port, "PING\r\nSET fuzz:probe 1\r\nINFO persistence\r\nCLIENT LIST\r\n", () => false, 3_000);
  return got === null ? "no connection" : JSON.stringify(got.slice(0, 6000));
}

/** Runs rounds until roundsMax or msMax; throws FuzzFailure (with the seed and round) at the first failure. */
export async function runSocketFuzz(target: FuzzTarget, opts: FuzzOptions): Promise<FuzzStats> {
  const rng = new Rng(opts.seed);
  const stats: FuzzStats = { rounds: 0, connections: 0, commands: 0, bytesSent: 0, protocolErrors: 0, quits: 0, abrupt: 0, rssPeakBytes: 0, outputLimitCloses: 0, resets: 0 };
  const t0 = Date.now();
  const fail = (round: number, what: string): never => {
    // The server's error lines (a crash may print kilobytes of bundled code around them).
    const errors = target.output().split("\n").filter((l) => /error|assert|fatal|^\s+at /i.test(l)).map((l) => l.slice(0, 300));
    throw new FuzzFailure(`fuzz failure: SEED=${opts.seed} round ${round}: ${what}\n--- server error lines ---\n${errors.slice(0, 40).join("\n")}`);
  };
  const outputLimitCloses = () => (target.output().match(/passed --client-output-buffer-limit/g) ?? []).length;
  for (let round = 1; round <= opts.roundsMax && Date.now() - t0 < opts.msMax; round++) {
    const n = rng.range(16, 32);
    const conns = Array.from({ length: n }, () => rng.fork());
    const results = await Promise.all(conns.map((c) => fuzzConnection(target, c, opts, outputLimitCloses)));
    stats.rounds++;
    // A dead server fails every connection: say that first.
    if (!target.alive()) fail(round, `the server exited; first connection failure: ${results.find((r) => r.failure !== undefined)?.failure ?? "none"}`);
    for (const [i, r] of results.entries()) {
      stats.connections++;
      stats.commands += r.commands;
      stats.bytesSent += r.bytes;
      if (r.protocolError) stats.protocolErrors++;
      if (r.quit) stats.quits++;
      if (r.abrupt) stats.abrupt++;
      stats.resets += r.resets ?? 0;
      if (r.failure !== undefined) fail(round, `connection ${i}: ${r.failure}`);
    }
    if (!(await pingFresh(target.port))) fail(round, "no +PONG on a fresh connection");
    const { rss, hwm } = readRss(target.pid);
    stats.rssPeakBytes = Math.max(stats.rssPeakBytes, rss, hwm);
    if (stats.rssPeakBytes > opts.rssBytesMax) fail(round, `RSS peak ${stats.rssPeakBytes} bytes is past the bound ${opts.rssBytesMax}`);
    const crash = CRASH_OUTPUT.exec(target.output());
    if (crash) fail(round, `the server printed '${crash[0]}'`);
    if (round % 100 === 0 && opts.log !== undefined) {
      // The server's own view, to tell a leak from a grown keyspace or a lazy collector.
      const info = (await askFresh(target.port, "INFO memory\r\nDBSIZE\r\n", (g) => /\r\n:\d+\r\n$/.test(g), 3_000)) ?? "";
      const heap = /used_memory:(\d+)/.exec(info)?.[1];
      const keys = /\r\n:(\d+)\r\n$/.exec(info)?.[1];
      opts.log(
        `round ${round}: ${stats.connections} connections, ${stats.commands} commands, ${(stats.bytesSent / 1e6).toFixed(1)} MB sent, ` +
          `RSS ${(rss / 1048576).toFixed(0)} MB (peak ${(stats.rssPeakBytes / 1048576).toFixed(0)} MB), heap ${(Number(heap) / 1048576).toFixed(0)} MB, ${keys} keys`,
      );
    }
  }
  stats.outputLimitCloses = outputLimitCloses();
  return stats;
}
