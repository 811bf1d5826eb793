// The peer boundary of the runtime: Transport (fire-and-forget sends, one message callback) and its twin.
import { assert } from "../errors.ts";
import type { Message, NodeId } from "../raft/types.ts";

/**
 * Carries Raft messages between members. `send` never blocks and never throws for a peer that is
 * down or slow: a message may be dropped, delayed, duplicated or reordered (Raft retries). Messages
 * handed to `send` were made safe to send by the runtime (their Ready is durable).
 */
export interface Transport {
  send(messages: readonly Message[]): void;
  /** The one handler for messages addressed to this member (set once, by the runtime). */
  onMessage(handler: (m: Message) => void): void;
  close(): void;
}

/**
 * An in-memory network of MemoryTransports. By default a send is queued and `flush()` delivers
 * the queue in order; a test or the simulator replaces `route` to delay, drop, duplicate, reorder or
 * cut links, and calls `deliver(m)` when a message arrives.
 */
export class MemoryNetwork {
  private readonly endpoints = new Map<NodeId, MemoryTransport>();
  /** Sent and not yet delivered (default route only). */
  readonly queue: Message[] = [];
  /** Called for every message sent by an open endpoint. */
  route: (m: Message) => void = (m) => {
    this.queue.push(m);
  };

  /** A fresh endpoint for `id` (after a crash, the old one is closed and a new one attached). */
  attach(id: NodeId): MemoryTransport {
    const old = this.endpoints.get(id);
    if (old) old.close();
    const t = new MemoryTransport(this, id);
    this.endpoints.set(id, t);
    return t;
  }

  /** Hands `m` to its destination if that endpoint is open and has a handler; else it is lost. */
  deliver(m: Message): boolean {
    const t = this.endpoints.get(m.to);
    if (!t || t.closed || !t.handler) return false;
    t.handler(m);
    return true;
  }

  /** Default route: delivers queued messages (and those they cause) until none remain or `max` were delivered. */
  flush(max = 100_000): number {
    let n = 0;
    while (this.queue.length > 0 && n < max) {
      this.deliver(this.queue.shift() as Message);
      n++;
    }
    return n;
  }
}

export class MemoryTransport implements Transport {
  closed = false;
  handler: ((m: Message) => void) | undefined;

  constructor(
    private readonly net: MemoryNetwork,
    readonly id: NodeId,
  ) {}

  send(messages: readonly Message[]): void {
    if (this.closed) return;
    for (const m of messages) {
      if (m.from !== this.id) assert(false, `node ${this.id} sends a message from ${m.from}`);
      this.net.route(m);
    }
  }

  onMessage(handler: (m: Message) => void): void {
    assert(this.handler === undefined, "onMessage set twice");
    this.handler = handler;
  }

  close(): void {
    this.closed = true;
  }
}
