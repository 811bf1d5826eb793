// A follower's link to the leader for the requests it cannot serve alone: writes it forwards and
// read-index requests (linearizable reads on a follower). One RESP connection to the leader's
// client port, opened with KV.PEER (the cluster id and this node's id), requests and replies in
// order. The reply bytes of a forwarded write are relayed to the client unchanged.
//
// What a lost link means: a request not yet written never reached the leader (LinkRefusedError:
// safe to retry); a request written and not answered may have been carried out
// (LinkLostError: for a write the outcome is unknown).
import type { Socket } from "bun";
import { encodeCommand } from "../resp/request-parser.ts";
import { ReplySpanError, replyEnd } from "../resp/reply-span.ts";
import { logger } from "../log.ts";
import { type PeerTls, peerIdentity } from "./peer-tls.ts";

const log = logger("link");

/** Requests written and not yet answered, past which new ones are refused (the leader is not keeping up). */
export const LINK_IN_FLIGHT_MAX = 100_000;
/** Reply bytes buffered while waiting for the rest of one reply, past which the link is dropped. */
export const LINK_REPLY_BYTES_MAX = 600 * 1024 * 1024;
/** A request unanswered this long drops the link (a paused or cut-off leader): its outcome is unknown. */
export const LINK_REQUEST_TIMEOUT_MS = 5000;
/** A connect attempt that has not opened within this is abandoned. */
export const LINK_CONNECT_TIMEOUT_MS = 1000;

/** The request never reached the leader: not carried out, safe to retry. */
export class LinkRefusedError extends Error {
  override name = "LinkRefusedError";
}

/** The request was sent and the link was lost before its reply: it may or may not have been carried out. */
export class LinkLostError extends Error {
  override name = "LinkLostError";
}

interface Request {
  readonly resolve: (reply: Buffer) => void;
  readonly reject: (e: Error) => void;
  readonly sentAtMs: number;
}

/** One connection to one leader address. */
class Link {
  private socket: Socket<undefined> | undefined;
  private opened = false;
  closed = false;
  /** Why it was retired (see retire), once it was. */
  private retiring: string | undefined;
  /** Bytes to write once open (requests made before the connection opened). */
  private pendingOut: Buffer[] = [];
  private pendingReqs: Request[] = [];
  /** Written, awaiting replies in order; the first `skip` replies answer the handshake. */
  private readonly inFlight: Request[] = [];
  private skip = 0;
  private buf: Buffer = Buffer.alloc(0);
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    readonly addr: string,
    hello: readonly string[][],
    private readonly onGone: (l: Link) => void,
    tls?: PeerTls,
  ) {
    for (const argv of hello) {
      this.pendingOut.push(encodeCommand(argv));
      this.skip++;
    }
    const [host, portText] = splitAddr(addr);
    const started = Date.now();
    this.timer = setInterval(() => {
      const now = Date.now();
      if (!this.opened && now - started > LINK_CONNECT_TIMEOUT_MS) this.fail(`connecting to the leader at ${addr} timed out`);
      else if (this.inFlight.length > 0 && now - this.inFlight[0]!.sentAtMs > LINK_REQUEST_TIMEOUT_MS) this.fail(`the leader at ${addr} did not answer within ${LINK_REQUEST_TIMEOUT_MS} ms`);
    }, 100);
    const link = this;
    Bun.connect<undefined>({
      hostname: host,
      port: Number(portText),
      // With peer TLS the leader's client port is dialled over TLS with this node's certificate
      // (the leader accepts KV.PEER only on such a connection); nothing is written before the
      // handshake shows a member's certificate (open comes before it: BUN-NOTES.md).
      ...(tls !== undefined ? { tls: tls.clientOptions(host) } : {}),
      socket: {
        open(s) {
          if (tls === undefined) link.onOpen(s);
        },
        ...(tls !== undefined
          ? {
              handshake(s: Socket<undefined>) {
                const who = peerIdentity(s, tls.ca, true);
                if (!who.ok) {
                  s.terminate();
                  link.fail(`refused the leader at ${addr}: ${who.why}`);
                  return;
                }
                link.onOpen(s);
              },
            }
          : {}),
        data(_s, chunk) {
          link.onData(chunk);
        },
        close() {
          link.fail(`the link to the leader at ${addr} closed`);
        },
        error(_s, err) {
          link.fail(`the link to the leader at ${addr} failed: ${err.message}`);
        },
        connectError(_s, err) {
          link.fail(`cannot connect to the leader at ${addr}: ${err.message}`);
        },
      },
    }).catch((err: Error) => this.fail(`cannot connect to the leader at ${addr}: ${err.message}`));
  }

  get idle(): boolean {
    return this.inFlight.length === 0 && this.pendingReqs.length === 0;
  }

  request(argv: readonly string[]): Promise<Buffer> {
    if (this.closed || this.retiring !== undefined) return Promise.reject(new LinkRefusedError(`no link to the leader at ${this.addr}`));
    if (this.inFlight.length + this.pendingReqs.length >= LINK_IN_FLIGHT_MAX) {
      return Promise.reject(new LinkRefusedError(`${LINK_IN_FLIGHT_MAX} requests already wait for the leader at ${this.addr}`));
    }
    return new Promise<Buffer>((resolve, reject) => {
      const bytes = encodeCommand(argv);
      if (!this.opened) {
        this.pendingOut.push(bytes);
        this.pendingReqs.push({ resolve, reject, sentAtMs: Date.now() });
        return;
      }
      this.inFlight.push({ resolve, reject, sentAtMs: Date.now() });
      this.write(bytes);
    });
  }

  private onOpen(s: Socket<undefined>): void {
    if (this.closed) {
      s.end();
      return;
    }
    this.socket = s;
    this.opened = true;
    const now = Date.now();
    for (const r of this.pendingReqs) this.inFlight.push({ ...r, sentAtMs: now });
    this.pendingReqs = [];
    const out = Buffer.concat(this.pendingOut);
    this.pendingOut = [];
    this.write(out);
  }

  /** Bun buffers what the kernel does not take (the socket is never paused here). */
  private write(b: Buffer): void {
    const s = this.socket!;
    let off = 0;
    while (off < b.length) {
      const n = s.write(b.subarray(off));
      if (n <= 0) {
        // Kernel full: keep the rest for drain-free retry on the next tick (rare; forwarded traffic is small).
        const rest = Buffer.from(b.subarray(off));
        setTimeout(() => {
          if (!this.closed) this.write(rest);
        }, 1);
        return;
      }
      off += n;
    }
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let at = 0;
    for (;;) {
      let end: number;
      try {
        end = replyEnd(this.buf, at);
      } catch (e) {
        if (!(e instanceof ReplySpanError)) throw e;
        this.fail(`the leader at ${this.addr} sent bytes that are not RESP: ${e.message}`);
        return;
      }
      if (end < 0) break;
      const reply = Buffer.from(this.buf.subarray(at, end));
      at = end;
      if (this.skip > 0) {
        this.skip--;
        if (reply[0] === 45) {
          // Requests written behind a refused handshake reached a connection that is not a member's
          // link, where KV.FWD is an unknown command: none was carried out.
          this.fail(`the leader at ${this.addr} refused this node: ${reply.toString("latin1").trim()}`, true);
          return;
        }
        continue;
      }
      const r = this.inFlight.shift();
      if (r === undefined) {
        this.fail(`the leader at ${this.addr} sent a reply nobody asked for`);
        return;
      }
      r.resolve(reply);
    }
    if (this.retiring !== undefined && this.inFlight.length === 0) {
      this.fail(this.retiring);
      return;
    }
    this.buf = at === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(at);
    if (this.buf.length > LINK_REPLY_BYTES_MAX) this.fail(`a reply from the leader at ${this.addr} passed ${LINK_REPLY_BYTES_MAX} bytes`);
  }

  /**
   * No longer the leader's link: nothing new is sent on it; requests not yet sent are refused;
   * those in flight keep their chance of an answer (a former leader answers a write once it has
   * applied it, or says it was dropped), up to LINK_REQUEST_TIMEOUT_MS, then it closes.
   */
  retire(why: string): void {
    if (this.closed) return;
    this.retiring = why;
    for (const r of this.pendingReqs.splice(0)) r.reject(new LinkRefusedError(why));
    if (this.inFlight.length === 0) this.fail(why);
  }

  fail(why: string, noneCarriedOut = false): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.socket?.terminate();
    if (this.inFlight.length > 0 || this.pendingReqs.length > 0) log.warn(`${why}: ${this.inFlight.length} request(s) in flight, ${this.pendingReqs.length} not sent`);
    else log.debug(why);
    for (const r of this.inFlight.splice(0)) r.reject(noneCarriedOut ? new LinkRefusedError(why) : new LinkLostError(why));
    for (const r of this.pendingReqs.splice(0)) r.reject(new LinkRefusedError(why));
    this.onGone(this);
  }
}

function splitAddr(addr: string): [string, string] {
  const i = addr.lastIndexOf(":");
  return [addr.slice(0, i).replace(/^\[|\]$/g, ""), addr.slice(i + 1)];
}

/**
 * Requests to whichever member leads now. A leader change closes the link to the old one (what was
 * in flight there gets LinkLostError).
 */
export class LeaderLinks {
  private link: Link | undefined;
  private closed = false;

  constructor(
    private readonly hello: readonly string[][],
    private readonly tls?: PeerTls,
  ) {}

  /** Sends `argv` to the leader at `addr` (its client address). */
  request(addr: string, argv: readonly string[]): Promise<Buffer> {
    if (this.closed) return Promise.reject(new LinkRefusedError("node shutting down"));
    let l = this.link;
    if (l !== undefined && l.addr !== addr) {
      this.retire(l, `the leader moved from ${l.addr} to ${addr}`);
      l = undefined;
    }
    if (l === undefined || l.closed) {
      l = this.link = new Link(
        addr,
        this.hello,
        (gone) => {
          if (this.link === gone) this.link = undefined;
          this.retired.delete(gone);
        },
        this.tls,
      );
    }
    return l.request(argv);
  }

  /**
   * The leader is now `addr` (undefined: this node): a link to another address is retired. What
   * was sent there is still answered by the former leader when it can be (a write it had
   * committed, as after a leadership transfer, gets its real reply); a paused or cut-off one
   * leaves it unanswered until LINK_REQUEST_TIMEOUT_MS (outcome unknown).
   */
  leaderIs(addr: string | undefined): void {
    const l = this.link;
    if (l !== undefined && l.addr !== addr) {
      this.retire(l, addr === undefined ? `the leader at ${l.addr} is no longer the leader` : `the leader moved from ${l.addr} to ${addr}`);
      this.link = undefined;
    }
  }

  private readonly retired = new Set<Link>();

  private retire(l: Link, why: string): void {
    this.retired.add(l);
    l.retire(why);
    if (l.closed) this.retired.delete(l);
  }

  close(): void {
    this.closed = true;
    this.link?.fail("node shutting down");
    this.link = undefined;
    for (const l of this.retired) l.fail("node shutting down");
    this.retired.clear();
  }
}
