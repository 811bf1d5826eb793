// A fault-injecting TCP proxy for tests, on 127.0.0.1 only: it listens on one port and forwards each
// connection to a target port, in one of three modes, changeable at any time:
// - pass: bytes go through unchanged, both ways;
// - drop: a blackhole. Entering it cuts every open connection; new connections are accepted and
//   everything they send is discarded (nothing reaches the target, nothing comes back), so the sender
//   sees a healthy socket into which its messages vanish, as with a partition. Leaving it cuts the
//   blackholed connections, so senders redial and get a real link again;
// - delay: every chunk is held `ms` milliseconds before it is forwarded, each direction in order.
// A fault proxy sits in front of one node's peer port, or of one directed link between two nodes.
import type { Socket, TCPSocketListener } from "bun";

export type ProxyMode = { readonly kind: "pass" } | { readonly kind: "drop" } | { readonly kind: "delay"; readonly ms: number };

/** Bytes queued towards one side past which the other side's reads are paused (resumed once drained). */
export const PROXY_QUEUE_BYTES_HIGH = 4 * 1024 * 1024;
/** Bytes received before the upstream connection opened past which the connection is cut. */
export const PROXY_EARLY_BYTES_MAX = 16 * 1024 * 1024;

export interface ProxyStats {
  /** Connections accepted since start. */
  accepted: number;
  /** Connections cut by a mode change or cut(). */
  cut: number;
  /** Bytes forwarded to the target and back to the client. */
  bytesForwarded: number;
  /** Bytes swallowed by the blackhole. */
  bytesDropped: number;
}

/** One direction of a proxied connection: what waits to be written to `to`. */
interface Leg {
  to: Socket<unknown> | null;
  /** Written out in order; `off` bytes of the first are already written. */
  queue: Uint8Array[];
  off: number;
  queued: number;
  /** Chunks held by delay mode: released in order, each at its time. */
  held: { at: number; buf: Uint8Array }[];
  timer: ReturnType<typeof setTimeout> | null;
}

interface Conn {
  down: Socket<Conn>;
  up: Socket<Conn> | null;
  blackhole: boolean;
  closed: boolean;
  /** To the target (from the client), and back to the client (from the target). */
  toUp: Leg;
  toDown: Leg;
}

const newLeg = (to: Socket<unknown> | null): Leg => ({ to, queue: [], off: 0, queued: 0, held: [], timer: null });

export class FaultProxy {
  readonly stats: ProxyStats = { accepted: 0, cut: 0, bytesForwarded: 0, bytesDropped: 0 };
  private modeNow: ProxyMode = { kind: "pass" };
  private readonly conns = new Set<Conn>();
  private listener: TCPSocketListener<Conn> | null = null;
  private closing = false;

  private constructor(
    readonly targetPort: number,
    readonly name: string,
  ) {}

  /** Starts a proxy to 127.0.0.1:targetPort, listening on listenPort (0: a free one; read `port`). */
  static start(opts: { targetPort: number; listenPort?: number; name?: string }): FaultProxy {
    const p = new FaultProxy(opts.targetPort, opts.name ?? `proxy->${opts.targetPort}`);
    p.listener = Bun.listen<Conn>({
      hostname: "127.0.0.1",
      port: opts.listenPort ?? 0,
      socket: {
        open: (s) => p.accept(s),
        data: (s, chunk) => p.fromDown(s.data, chunk),
        drain: (s) => p.flush(s.data, s.data.toDown),
        close: (s) => p.close(s.data),
        error: (s) => p.close(s.data),
      },
    });
    return p;
  }

  get port(): number {
    if (!this.listener) throw new Error(`${this.name} is closed`);
    return this.listener.port;
  }

  get mode(): ProxyMode {
    return this.modeNow;
  }

  /** Open connections (blackholed ones included). */
  get connections(): number {
    return this.conns.size;
  }

  setMode(mode: ProxyMode): void {
    if (mode.kind === "delay" && !(mode.ms >= 0 && Number.isFinite(mode.ms))) throw new RangeError(`bad delay ${mode.ms}`);
    const was = this.modeNow.kind;
    this.modeNow = mode;
    if (mode.kind === "drop" && was !== "drop") this.cut();
    else if (mode.kind !== "drop" && was === "drop") this.cut((c) => c.blackhole);
  }

  /** Closes open connections (those `which` selects; all by default); the mode stays. */
  cut(which: (c: Conn) => boolean = () => true): void {
    for (const c of [...this.conns]) {
      if (!which(c)) continue;
      this.stats.cut++;
      this.close(c);
    }
  }

  /** Stops listening and closes every connection. */
  stop(): void {
    this.closing = true;
    this.cut();
    this.listener?.stop(true);
    this.listener = null;
  }

  private accept(down: Socket<Conn>): void {
    this.stats.accepted++;
    const c: Conn = { down, up: null, blackhole: false, closed: false, toUp: newLeg(null), toDown: newLeg(down as Socket<unknown>) };
    down.data = c;
    this.conns.add(c);
    if (this.closing) return this.close(c);
    if (this.modeNow.kind === "drop") {
      c.blackhole = true;
      return;
    }
    Bun.connect<Conn>({
      hostname: "127.0.0.1",
      port: this.targetPort,
      data: c,
      socket: {
        open: (up) => {
          if (c.closed) {
            up.end();
            return;
          }
          c.up = up;
          c.toUp.to = up as Socket<unknown>;
          this.flush(c, c.toUp);
        },
        data: (up, chunk) => this.fromUp(up.data, chunk),
        drain: (up) => this.flush(up.data, up.data.toUp),
        close: (up) => this.close(up.data),
        error: (up) => this.close(up.data),
        connectError: () => this.close(c),
      },
    }).catch(() => this.close(c));
  }

  private fromDown(c: Conn, chunk: Uint8Array): void {
    if (c.closed) return;
    if (c.blackhole) {
      this.stats.bytesDropped += chunk.length;
      return;
    }
    if (!c.up && c.toUp.queued + chunk.length > PROXY_EARLY_BYTES_MAX) return this.close(c);
    this.forward(c, c.toUp, chunk, c.down as Socket<unknown>);
  }

  private fromUp(c: Conn, chunk: Uint8Array): void {
    if (c.closed) return;
    this.forward(c, c.toDown, chunk, c.up as Socket<unknown>);
  }

  /** Queues `chunk` on `leg` now or after the delay; `from` is paused while the leg holds too much. */
  private forward(c: Conn, leg: Leg, chunk: Uint8Array, from: Socket<unknown>): void {
    const copy = new Uint8Array(chunk); // the socket may reuse its buffer
    const mode = this.modeNow;
    if (mode.kind === "delay" && mode.ms > 0) {
      const last = leg.held.length > 0 ? (leg.held[leg.held.length - 1] as { at: number }).at : 0;
      leg.held.push({ at: Math.max(performance.now() + mode.ms, last), buf: copy });
      this.schedule(c, leg);
    } else if (leg.held.length > 0) {
      // Leaving delay mode: what is held still goes first.
      leg.held.push({ at: 0, buf: copy });
      this.schedule(c, leg);
    } else {
      this.enqueue(c, leg, copy);
    }
    if (leg.queued > PROXY_QUEUE_BYTES_HIGH) from.pause();
  }

  private schedule(c: Conn, leg: Leg): void {
    if (leg.timer || leg.held.length === 0) return;
    const wait = Math.max(0, (leg.held[0] as { at: number }).at - performance.now());
    leg.timer = setTimeout(() => {
      leg.timer = null;
      if (c.closed) return;
      const now = performance.now();
      while (leg.held.length > 0 && (leg.held[0] as { at: number }).at <= now) this.enqueue(c, leg, (leg.held.shift() as { buf: Uint8Array }).buf);
      this.schedule(c, leg);
    }, wait);
  }

  private enqueue(c: Conn, leg: Leg, buf: Uint8Array): void {
    leg.queue.push(buf);
    leg.queued += buf.length;
    this.flush(c, leg);
  }

  private flush(c: Conn, leg: Leg): void {
    if (c.closed || !leg.to) return;
    while (leg.queue.length > 0) {
      const head = leg.queue[0] as Uint8Array;
      const n = leg.to.write(head, leg.off, head.length - leg.off);
      if (n < 0) return this.close(c);
      leg.off += n;
      leg.queued -= n;
      this.stats.bytesForwarded += n;
      if (leg.off < head.length) return; // the socket is full: drain() resumes
      leg.queue.shift();
      leg.off = 0;
    }
    // Drained: let the source read again.
    const from = leg === c.toUp ? c.down : c.up;
    from?.resume();
  }

  private close(c: Conn | undefined): void {
    if (!c || c.closed) return;
    c.closed = true;
    this.conns.delete(c);
    for (const leg of [c.toUp, c.toDown]) {
      if (leg.timer) clearTimeout(leg.timer);
      leg.timer = null;
      leg.held = [];
      leg.queue = [];
      leg.queued = 0;
    }
    c.down.end();
    c.up?.end();
  }
}
