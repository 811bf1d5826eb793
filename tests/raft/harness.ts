// A synchronous in-process cluster for rule and transcript tests: persist, deliver, apply, in lockstep.
import { MemoryStorage, bootstrapStorage } from "../../src/raft/storage.ts";
import { RawNode } from "../../src/raft/rawnode.ts";
import { Rand } from "../../src/raft/rand.ts";
import type { RaftConfig } from "../../src/raft/raft.ts";
import type { Entry, Message, NodeId, ReadState } from "../../src/raft/types.ts";

export interface TestNode {
  id: NodeId;
  rn: RawNode;
  storage: MemoryStorage;
  applied: Entry[];
  readStates: ReadState[];
}

export interface ClusterOptions {
  voters?: NodeId[];
  learners?: NodeId[];
  seed?: number;
  config?: Partial<Omit<RaftConfig, "id" | "storage" | "rand">>;
  /** Extra durable state per node, written after the bootstrap entries (indices 1..voters). */
  logs?: Record<number, { terms: number[]; term: number; vote?: NodeId }>;
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

export class Cluster {
  readonly nodes = new Map<NodeId, TestNode>();
  /** Messages produced but not yet delivered. */
  inbox: Message[] = [];
  /** Links that drop messages: "from->to". */
  readonly cut = new Set<string>();
  readonly delivered: Message[] = [];
  private readonly opts: ClusterOptions;

  constructor(ids: NodeId[], opts: ClusterOptions = {}) {
    this.opts = opts;
    const voters = opts.voters ?? ids;
    const learners = opts.learners ?? [];
    for (const id of ids) {
      const storage = new MemoryStorage();
      bootstrapStorage(storage, voters, learners);
      const extra = opts.logs?.[id];
      if (extra) {
        let index = storage.lastIndex();
        storage.append(extra.terms.map((term) => ({ index: ++index, term, type: "normal" as const, data: enc(`t${term}`) })));
        storage.setHardState({ term: extra.term, vote: extra.vote ?? 0, commit: storage.getHardState().commit });
      }
      this.add(id, storage);
    }
    this.settle();
  }

  add(id: NodeId, storage: MemoryStorage, applied = 0): TestNode {
    const rn = new RawNode({
      id,
      storage,
      rand: new Rand((this.opts.seed ?? 1) * 1000 + id),
      applied,
      ...this.opts.config,
    });
    const node: TestNode = { id, rn, storage, applied: [], readStates: [] };
    this.nodes.set(id, node);
    return node;
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  raft(id: NodeId) {
    return this.node(id).rn.raft;
  }

  /** Processes every pending Ready (persist, queue messages, apply) until none remain; no delivery. */
  settle(): void {
    for (let progress = true; progress; ) {
      progress = false;
      for (const n of this.nodes.values()) {
        while (n.rn.hasReady()) {
          progress = true;
          const rd = n.rn.ready();
          if (rd.snapshot) {
            n.storage.applySnapshot(rd.snapshot);
            n.applied = [];
          }
          n.storage.append(rd.entries);
          if (rd.hardState) n.storage.setHardState(rd.hardState);
          for (const m of rd.messages) this.inbox.push(m);
          for (const e of rd.committedEntries) n.applied.push(e);
          for (const rs of rd.readStates) n.readStates.push(rs);
          n.rn.advance(rd);
        }
      }
    }
  }

  /** Takes the queued messages (after settling), leaving the inbox empty. */
  take(): Message[] {
    this.settle();
    const out = this.inbox;
    this.inbox = [];
    return out;
  }

  deliver(msgs: readonly Message[]): void {
    for (const m of msgs) {
      if (this.cut.has(`${m.from}->${m.to}`)) continue;
      const n = this.nodes.get(m.to);
      if (!n) continue;
      this.delivered.push(m);
      n.rn.step(m);
    }
  }

  /** Delivers until quiet. */
  stabilize(maxRounds = 1000): void {
    for (let i = 0; i < maxRounds; i++) {
      const msgs = this.take();
      if (msgs.length === 0) return;
      this.deliver(msgs);
    }
    throw new Error("cluster did not stabilize");
  }

  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) this.node(id).rn.tick();
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) for (const node of this.nodes.values()) node.rn.tick();
  }

  /** Makes `id` leader through a normal election (its timeout fires first). */
  elect(id: NodeId): void {
    this.node(id).rn.campaign();
    this.stabilize();
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}->${other}`);
      this.cut.add(`${other}->${id}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  leader(): NodeId | undefined {
    for (const n of this.nodes.values()) if (n.rn.raft.role === "leader") return n.id;
    return undefined;
  }

  appliedData(id: NodeId): string[] {
    return this.node(id)
      .applied.filter((e) => e.type === "normal" && e.data.length > 0)
      .map((e) => dec(e.data));
  }
}

/** One line per message, for transcripts: "1->2 append t2 [3/1] e[4/2] c3". */
export function fmt(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} t${m.term}`;
  switch (m.type) {
    case "append":
      return `${head} prev=${m.logIndex}/${m.logTerm} entries=[${m.entries.map((e) => `${e.index}/${e.term}`).join(",")}] commit=${m.commit}`;
    case "append-resp":
      return m.reject ? `${head} reject index=${m.index} hint=${m.rejectHint}/${m.hintTerm}` : `${head} index=${m.index}`;
    case "vote":
    case "pre-vote":
      return `${head} last=${m.lastIndex}/${m.lastTerm}${m.transfer ? " transfer" : ""}`;
    case "vote-resp":
    case "pre-vote-resp":
      return `${head}${m.reject ? " reject" : ""}`;
    case "heartbeat":
      return `${head} commit=${m.commit}${m.ctx ? ` ctx=${m.ctx}` : ""}`;
    case "heartbeat-resp":
      return `${head}${m.ctx ? ` ctx=${m.ctx}` : ""}`;
    case "snapshot":
      return `${head} snap=${m.snapshot.meta.index}/${m.snapshot.meta.term}`;
    case "timeout-now":
      return head;
  }
}

/** Takes pending messages and formats them, sorted for a stable transcript. */
export function takeFmt(c: Cluster): string[] {
  return c.take().map(fmt).sort();
}
