// Deterministic cluster simulator: seeded network faults, crashes, restarts and workload, checked at every step.
import { RawNode } from "../../src/raft/rawnode.ts";
import { Rand } from "../../src/raft/rand.ts";
import { MemoryStorage, bootstrapStorage } from "../../src/raft/storage.ts";
import type { ConfChange, Message, NodeId, Ready } from "../../src/raft/types.ts";
import { Checker, digest, type SimEvent, type Violation } from "./checkers.ts";

export const FAULT_KINDS = [
  "drop",
  "duplicate",
  "delay",
  "partition-symmetric",
  "partition-asymmetric",
  "isolate-leader",
  "bridge",
  "crash",
  "torn-crash",
  "restart",
  "pause",
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export const WORKLOAD_KINDS = ["propose", "read-index", "transfer", "conf-change", "snapshot"] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

export interface SimOptions {
  seed: number;
  nodes: 3 | 5;
  /** Ticks with faults and workload. */
  faultTicks?: number;
  /** After healing: a leader must appear within leaderTicks, and catch everyone up within livenessTicks. */
  leaderTicks?: number;
  livenessTicks?: number;
  electionTicks?: number;
  /** Keep every event (for debugging a failing seed). */
  keepTrace?: boolean;
}

export interface SimResult {
  readonly seed: number;
  readonly nodes: number;
  readonly violations: readonly Violation[];
  readonly faults: Record<FaultKind, number>;
  readonly workload: Record<WorkloadKind, number>;
  readonly stats: {
    ticks: number;
    messages: number;
    acked: number;
    readsServed: number;
    leaders: number;
    maxCommit: number;
    /** Ticks after healing until a leader existed, and until every member caught up (-1: never). */
    ticksToLeader: number;
    ticksToConverge: number;
  };
  readonly trace: readonly string[];
}

/** Micro-steps per tick: message latency is counted in micro-steps, so a round trip fits in a tick. */
const STEPS_PER_TICK = 10;

interface PendingWrite {
  readonly term: number;
  readonly value: string;
}

interface SimNode {
  readonly id: NodeId;
  up: boolean;
  rn: RawNode | undefined;
  readonly storage: MemoryStorage;
  /** The state machine: a register, and the index it reflects. */
  value: string;
  applied: number;
  pendingWrites: Map<number, PendingWrite>;
  /** Reads confirmed by ReadIndex, waiting for applied >= index. */
  readsToServe: { ctx: string; index: number }[];
  /** Crash in the middle of persisting the next Ready. */
  tornCrashArmed: boolean;
  lastRole: string;
  lastTerm: number;
  restarts: number;
  /** Paused (like SIGSTOP) until this micro-step: no ticks, messages wait. */
  pausedUntil: number;
  /** Asynchronous seeds: the Ready being written, and when the write completes. */
  inflight: Ready | undefined;
  inflightDoneAt: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export class Simulator {
  readonly opts: Required<Omit<SimOptions, "keepTrace">> & { keepTrace: boolean };
  readonly rand: Rand;
  readonly checker = new Checker();
  readonly nodes = new Map<NodeId, SimNode>();
  /** Every id that may ever be a member: the initial voters plus one spare. */
  readonly universe: NodeId[];
  private now = 0;
  private readonly queue = new Map<number, Message[]>();
  /** Directed links that drop everything: "from>to". */
  private blocked = new Set<string>();
  private partitionUntil = 0;
  private dropRate: number;
  private dupRate: number;
  private delayMax: number;
  /** Raft tuning of this seed: small messages and windows exercise flow control and Figure 8. */
  private readonly msgBytesMax: number;
  private readonly inflightMessagesMax: number;
  /** 0: each Ready is persisted at once; otherwise writes take 1..fsyncStepsMax micro-steps. */
  private readonly fsyncStepsMax: number;
  private counter = 0;
  readonly faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  readonly workload = Object.fromEntries(WORKLOAD_KINDS.map((k) => [k, 0])) as Record<WorkloadKind, number>;
  private messages = 0;
  private acked = 0;
  private maxAckedIndex = 0;
  private readsServed = 0;
  private readonly trace: string[] = [];
  private readonly termsWithLeader = new Set<number>();

  constructor(o: SimOptions) {
    this.opts = {
      seed: o.seed,
      nodes: o.nodes,
      faultTicks: o.faultTicks ?? 300,
      // Two-voter configurations (allowed in 3-node runs) split votes often over slow links.
      leaderTicks: o.leaderTicks ?? 250,
      // Catch-up over a reordering network with one-entry messages is slow (rejections reset the pipeline).
      livenessTicks: o.livenessTicks ?? 800,
      electionTicks: o.electionTicks ?? 10,
      keepTrace: o.keepTrace ?? false,
    };
    this.rand = new Rand(o.seed * 2 + (o.nodes === 5 ? 1 : 0));
    const voters: NodeId[] = [];
    for (let i = 1; i <= o.nodes; i++) voters.push(i);
    this.universe = [...voters, o.nodes + 1];
    // Network personality of this seed.
    this.dropRate = this.rand.pick([0, 0.01, 0.05, 0.15]);
    this.dupRate = this.rand.pick([0, 0.02, 0.05]);
    this.delayMax = this.rand.pick([4, 12, 40]);
    // One entry per message needs a deep pipeline to catch up; a window of one needs big messages.
    const tuning = this.rand.pick([
      [1024 * 1024, 256],
      [100, 8],
      [1, 64],
      [1024 * 1024, 1],
    ] as const);
    this.msgBytesMax = tuning[0];
    this.inflightMessagesMax = tuning[1];
    this.fsyncStepsMax = this.rand.pick([0, 0, 3, 15]);
    for (const id of this.universe) {
      const storage = new MemoryStorage();
      // The spare starts empty: it only learns the cluster if it is added.
      if (id <= o.nodes) bootstrapStorage(storage, voters);
      const n: SimNode = {
        id,
        up: false,
        rn: undefined,
        storage,
        value: "",
        applied: 0,
        pendingWrites: new Map(),
        readsToServe: [],
        tornCrashArmed: false,
        lastRole: "",
        lastTerm: -1,
        restarts: 0,
        pausedUntil: 0,
        inflight: undefined,
        inflightDoneAt: 0,
      };
      this.nodes.set(id, n);
      // Bootstrap writes are durable before the node starts.
      this.emit({ kind: "persist", node: id, entries: storage.allEntries().map(digest), hardState: storage.getHardState() });
      this.start(n);
    }
  }

  private emit(ev: SimEvent): void {
    this.checker.observe(ev);
    if (this.opts.keepTrace) this.trace.push(`${this.now} ${JSON.stringify(ev, (_k, v) => (v instanceof Uint8Array ? dec.decode(v) : v))}`);
  }

  private log(line: string): void {
    if (this.opts.keepTrace) this.trace.push(`${this.now} # ${line}`);
  }

  // ---- node lifecycle ----

  private start(n: SimNode): void {
    const snap = n.storage.snapshot();
    n.rn = new RawNode({
      id: n.id,
      storage: n.storage,
      rand: new Rand(this.opts.seed * 7919 + n.id * 104729 + n.restarts * 15485863),
      applied: snap.meta.index,
      electionTicks: this.opts.electionTicks,
      heartbeatTicks: 1,
      msgBytesMax: this.msgBytesMax,
      inflightMessagesMax: this.inflightMessagesMax,
    });
    n.up = true;
    n.value = dec.decode(snap.data);
    n.applied = snap.meta.index;
    n.pendingWrites = new Map();
    n.readsToServe = [];
    n.tornCrashArmed = false;
    n.inflight = undefined;
    n.lastRole = "";
    n.lastTerm = -1;
    this.emit({ kind: "restore", node: n.id, index: snap.meta.index });
    this.observeRole(n);
    this.processReady(n);
  }

  private crash(n: SimNode, torn: boolean): void {
    this.log(`crash ${n.id}${torn ? " (torn)" : ""}`);
    this.faults[torn ? "torn-crash" : "crash"]++;
    n.up = false;
    n.rn = undefined;
    n.inflight = undefined;
    n.pendingWrites.clear();
    n.readsToServe = [];
    this.emit({ kind: "crash", node: n.id });
  }

  private observeRole(n: SimNode): void {
    const rn = n.rn;
    if (!rn) return;
    const r = rn.raft;
    if (r.role !== n.lastRole || r.term !== n.lastTerm) {
      n.lastRole = r.role;
      n.lastTerm = r.term;
      if (r.role === "leader") this.termsWithLeader.add(r.term);
      this.emit({ kind: "role", node: n.id, term: r.term, role: r.role });
    }
  }

  /**
   * The runtime's Ready loop. Synchronous seeds persist each Ready at once; asynchronous seeds model
   * fsync latency: the Ready is written some micro-steps later while the node keeps stepping messages,
   * ticking and taking proposals (the next Ready waits for advance()).
   */
  private processReady(n: SimNode): void {
    while (n.up && n.rn && !n.inflight && n.rn.hasReady()) {
      const rd = n.rn.ready();
      if (this.fsyncStepsMax > 0) {
        n.inflight = rd;
        n.inflightDoneAt = this.now + 1 + this.rand.int(this.fsyncStepsMax);
        return;
      }
      if (!this.completeReady(n, rd)) return;
    }
  }

  /** Asynchronous seeds: finish the writes whose time has come. */
  private completeWrites(): void {
    for (const n of this.nodes.values()) {
      const rd = n.inflight;
      if (!rd || n.inflightDoneAt > this.now) continue;
      n.inflight = undefined;
      if (this.completeReady(n, rd)) this.processReady(n);
    }
  }

  /** Persist, send, apply, advance. Returns false if the node crashed while writing. */
  private completeReady(n: SimNode, rd: Ready): boolean {
    const rn = n.rn;
    if (!rn) return false;
    if (n.tornCrashArmed && (rd.entries.length > 0 || rd.snapshot || rd.hardState)) {
      this.tornPersist(n, rd);
      this.crash(n, true);
      return false;
    }
    if (rd.snapshot) {
      n.storage.applySnapshot(rd.snapshot);
    }
    n.storage.append(rd.entries);
    if (rd.hardState) n.storage.setHardState(rd.hardState);
    if (rd.snapshot || rd.entries.length > 0 || rd.hardState) {
      this.emit({
        kind: "persist",
        node: n.id,
        ...(rd.snapshot ? { snapshot: { index: rd.snapshot.meta.index, term: rd.snapshot.meta.term } } : {}),
        entries: rd.entries.map(digest),
        ...(rd.hardState ? { hardState: rd.hardState } : {}),
      });
    }
    for (const m of rd.messages) this.send(n, m);
    if (rd.snapshot) {
      n.value = dec.decode(rd.snapshot.data);
      n.applied = rd.snapshot.meta.index;
      n.pendingWrites.clear();
      this.emit({ kind: "restore", node: n.id, index: n.applied });
    }
    for (const e of rd.committedEntries) {
      const value = e.type === "normal" ? dec.decode(e.data) : "";
      this.emit({ kind: "apply", node: n.id, entry: digest(e), value });
      if (value !== "") n.value = value;
      n.applied = e.index;
      const w = n.pendingWrites.get(e.index);
      if (w) {
        n.pendingWrites.delete(e.index);
        if (w.term === e.term) {
          this.acked++;
          this.maxAckedIndex = Math.max(this.maxAckedIndex, e.index);
          this.emit({ kind: "write-ack", value: w.value });
        }
      }
    }
    for (const rs of rd.readStates) n.readsToServe.push({ ctx: rs.requestCtx, index: rs.index });
    rn.advance(rd);
    this.serveReads(n);
    this.observeRole(n);
    return true;
  }

  /** A crash in the middle of a WAL write: a prefix of [snapshot, entries..., hardState] survives. */
  private tornPersist(n: SimNode, rd: Ready): void {
    const steps = (rd.snapshot ? 1 : 0) + rd.entries.length + (rd.hardState ? 1 : 0);
    const keep = this.rand.int(steps); // at least the last step is lost
    let k = keep;
    let snapshot: { index: number; term: number } | undefined;
    if (rd.snapshot && k > 0) {
      n.storage.applySnapshot(rd.snapshot);
      snapshot = { index: rd.snapshot.meta.index, term: rd.snapshot.meta.term };
      k--;
    } else if (rd.snapshot) {
      return;
    }
    const ents = rd.entries.slice(0, Math.min(k, rd.entries.length));
    n.storage.append(ents);
    this.emit({ kind: "persist", node: n.id, ...(snapshot ? { snapshot } : {}), entries: ents.map(digest) });
  }

  private serveReads(n: SimNode): void {
    if (n.readsToServe.length === 0) return;
    const waiting: { ctx: string; index: number }[] = [];
    for (const r of n.readsToServe) {
      if (n.applied >= r.index) {
        this.readsServed++;
        this.emit({ kind: "read-return", id: r.ctx, value: n.value });
      } else waiting.push(r);
    }
    n.readsToServe = waiting;
  }

  // ---- network ----

  private send(from: SimNode, m: Message): void {
    this.emit({ kind: "send", node: from.id, msg: m });
    this.messages++;
    this.enqueue(m, 1 + this.rand.int(this.delayMax));
    if (this.now < this.faultEnd && this.dupRate > 0 && this.rand.chance(this.dupRate)) {
      this.faults.duplicate++;
      this.enqueue(m, 1 + this.rand.int(this.delayMax * 3));
    }
  }

  private enqueue(m: Message, delay: number): void {
    if (delay > STEPS_PER_TICK) this.faults.delay++;
    const at = this.now + delay;
    let q = this.queue.get(at);
    if (!q) {
      q = [];
      this.queue.set(at, q);
    }
    q.push(m);
  }

  private deliverDue(): void {
    const q = this.queue.get(this.now);
    if (!q) return;
    this.queue.delete(this.now);
    // Same-instant messages arrive in a random order.
    for (let i = q.length - 1; i > 0; i--) {
      const j = this.rand.int(i + 1);
      const t = q[i] as Message;
      q[i] = q[j] as Message;
      q[j] = t;
    }
    for (const m of q) {
      const dst = this.nodes.get(m.to);
      if (!dst || !dst.up || !dst.rn) continue;
      if (this.blocked.has(`${m.from}>${m.to}`)) continue;
      if (dst.pausedUntil > this.now) {
        this.enqueue(m, dst.pausedUntil - this.now + this.rand.int(3));
        continue;
      }
      if (this.now < this.faultEnd && this.dropRate > 0 && this.rand.chance(this.dropRate)) {
        this.faults.drop++;
        continue;
      }
      dst.rn.step(m);
      this.observeRole(dst);
      this.processReady(dst);
    }
  }

  // ---- faults ----

  private get faultEnd(): number {
    return this.opts.faultTicks * STEPS_PER_TICK;
  }

  private leaderNode(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      if (n.up && n.rn && n.rn.raft.role === "leader" && (!best || n.rn.raft.term > (best.rn as RawNode).raft.term)) best = n;
    }
    return best;
  }

  private members(): NodeId[] {
    return this.universe;
  }

  private injectFaults(tick: number): void {
    const ids = this.members();
    if (this.blocked.size > 0 && tick >= this.partitionUntil) {
      this.log("heal partition");
      this.blocked = new Set();
    }
    if (this.blocked.size === 0 && this.rand.chance(0.03)) {
      const kind = this.rand.pick(["partition-symmetric", "partition-asymmetric", "isolate-leader", "bridge"] as const);
      const shuffled = [...ids];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = this.rand.int(i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j] as NodeId, shuffled[i] as NodeId];
      }
      const cut = (a: NodeId, b: NodeId): void => {
        this.blocked.add(`${a}>${b}`);
        this.blocked.add(`${b}>${a}`);
      };
      switch (kind) {
        case "partition-symmetric": {
          const k = 1 + this.rand.int(ids.length - 1);
          const left = shuffled.slice(0, k);
          const right = shuffled.slice(k);
          for (const a of left) for (const b of right) cut(a, b);
          break;
        }
        case "partition-asymmetric": {
          // Some directed links fail: A hears B but B does not hear A.
          const links = 1 + this.rand.int(ids.length);
          for (let i = 0; i < links; i++) {
            const a = this.rand.pick(ids);
            const b = this.rand.pick(ids);
            if (a !== b) this.blocked.add(`${a}>${b}`);
          }
          break;
        }
        case "isolate-leader": {
          const l = this.leaderNode()?.id ?? this.rand.pick(ids);
          for (const b of ids) if (b !== l) cut(l, b);
          break;
        }
        case "bridge": {
          // Two halves that only talk through one bridge node.
          const bridge = shuffled[0] as NodeId;
          const rest = shuffled.slice(1);
          const half = Math.floor(rest.length / 2);
          for (const a of rest.slice(0, half)) for (const b of rest.slice(half)) cut(a, b);
          this.log(`bridge via ${bridge}`);
          break;
        }
      }
      this.faults[kind]++;
      this.partitionUntil = tick + 10 + this.rand.int(80);
      this.log(`${kind} ${[...this.blocked].join(",")} until ${this.partitionUntil}`);
    }
    if (this.rand.chance(0.015)) {
      const up = [...this.nodes.values()].filter((n) => n.up);
      if (up.length > 0) {
        const n = this.rand.pick(up);
        if (this.rand.chance(0.5)) n.tornCrashArmed = true;
        else this.crash(n, false);
      }
    }
    if (this.rand.chance(0.01)) {
      // Pause a node (often the leader): it wakes up believing nothing happened.
      const l = this.leaderNode();
      const n = l && this.rand.chance(0.6) ? l : this.rand.pick([...this.nodes.values()]);
      if (n.up) {
        this.faults.pause++;
        n.pausedUntil = this.now + (5 + this.rand.int(40)) * STEPS_PER_TICK;
        this.log(`pause ${n.id} until ${n.pausedUntil}`);
      }
    }
    for (const n of this.nodes.values()) {
      if (!n.up && this.rand.chance(0.06)) {
        this.faults.restart++;
        n.restarts++;
        this.log(`restart ${n.id}`);
        this.start(n);
      }
    }
  }

  // ---- workload ----

  private runWorkload(): void {
    // Clients talk to any node that believes it leads (a deposed leader may not know yet).
    const leaders = [...this.nodes.values()].filter((n) => n.up && n.rn && n.pausedUntil <= this.now && n.rn.raft.role === "leader");
    if (leaders.length === 0) return;
    const l = this.rand.pick(leaders);
    if (!l.rn) return;
    const rn = l.rn;
    if (this.rand.chance(0.6)) {
      const k = 1 + this.rand.int(3);
      for (let i = 0; i < k; i++) {
        const value = `v${++this.counter}`;
        this.emit({ kind: "write-invoke", value });
        const r = rn.propose(enc.encode(value));
        this.workload.propose++;
        if (r.ok) l.pendingWrites.set(r.index, { term: r.term, value });
      }
    }
    if (this.rand.chance(0.3)) {
      const ctx = `r${++this.counter}`;
      this.emit({ kind: "read-invoke", id: ctx });
      if (rn.readIndex(ctx) === "ok") this.workload["read-index"]++;
    }
    if (this.rand.chance(0.01)) {
      const voters = rn.raft.confState().voters.filter((v) => v !== l.id);
      if (voters.length > 0) {
        const to = this.rand.pick(voters);
        this.log(`transfer ${l.id} -> ${to}`);
        if (rn.transferLeadership(to) === "ok") this.workload.transfer++;
      }
    }
    if (this.rand.chance(0.015)) {
      const cs = rn.raft.confState();
      const target = this.rand.pick(this.universe);
      const isVoter = cs.voters.includes(target);
      const isLearner = cs.learners.includes(target);
      let cc: ConfChange;
      const minVoters = this.opts.nodes === 5 ? 3 : 2;
      if (isVoter) cc = cs.voters.length > minVoters && this.rand.chance(0.7) ? { type: "remove-node", node: target } : { type: "add-learner", node: target };
      else if (isLearner) cc = this.rand.chance(0.7) ? { type: "add-voter", node: target } : { type: "remove-node", node: target };
      else cc = this.rand.chance(0.5) ? { type: "add-learner", node: target } : { type: "add-voter", node: target };
      if (cc.type === "add-learner" && isVoter && cs.voters.length <= minVoters) return;
      const r = rn.proposeMembershipChange(cc);
      this.log(`conf-change ${cc.type} ${cc.node}: ${r.ok ? "proposed" : r.reason}`);
      if (r.ok) this.workload["conf-change"]++;
    }
    this.processReady(l);
  }

  private maybeCompact(): void {
    if (!this.rand.chance(0.08)) return;
    const up = [...this.nodes.values()].filter((n) => n.up && n.rn);
    if (up.length === 0) return;
    const n = this.rand.pick(up);
    const rn = n.rn as RawNode;
    const first = n.storage.firstIndex();
    if (n.applied - first < 4) return;
    // Keep a few entries so that a slightly lagging follower still gets appends.
    const at = n.applied - this.rand.int(3);
    if (at < first) return;
    n.storage.createSnapshot(at === n.applied ? at : n.applied, rn.raft.confState(), enc.encode(n.value));
    this.workload.snapshot++;
    this.log(`snapshot ${n.id} at ${n.applied}`);
  }

  // ---- main loop ----

  private tickAll(): void {
    for (const n of this.nodes.values()) {
      if (!n.up || !n.rn || n.pausedUntil > this.now) continue;
      n.rn.tick();
      this.observeRole(n);
      this.processReady(n);
    }
  }

  private runTick(tick: number, faults: boolean): void {
    this.checker.now = this.now;
    if (faults) {
      this.injectFaults(tick);
      this.runWorkload();
      this.maybeCompact();
    }
    this.tickAll();
    for (let s = 0; s < STEPS_PER_TICK; s++) {
      this.now++;
      this.checker.now = this.now;
      this.deliverDue();
      if (this.fsyncStepsMax > 0) this.completeWrites();
    }
  }

  private healAll(): void {
    this.blocked = new Set();
    for (const n of this.nodes.values()) {
      n.tornCrashArmed = false;
      n.pausedUntil = 0;
      if (!n.up) {
        this.faults.restart++;
        n.restarts++;
        this.start(n);
      }
    }
    // Half the seeds heal with a minority of voters left down: liveness must not need everyone.
    // A pending change may still remove one voter, so leave down a minority of (voters - 1).
    if (this.rand.chance(0.5)) {
      let ref: SimNode | undefined;
      for (const n of this.nodes.values()) if (n.rn && (!ref || n.applied > ref.applied)) ref = n;
      const voters = ref?.rn ? ref.rn.raft.confState().voters : [];
      const downMax = Math.floor((voters.length - 2) / 2);
      const k = downMax > 0 ? this.rand.range(1, downMax) : 0;
      for (let i = 0; i < k; i++) {
        const up = voters.map((id) => this.nodes.get(id)).filter((n): n is SimNode => n !== undefined && n.up);
        if (up.length === 0) break;
        const victim = this.rand.pick(up);
        this.crash(victim, false);
        this.leftDown.add(victim.id);
      }
    }
    this.log(`heal all${this.leftDown.size > 0 ? `, leaving ${[...this.leftDown].join(",")} down` : ""}`);
  }

  /** Nodes deliberately left down after healing. */
  private readonly leftDown = new Set<NodeId>();

  /** Liveness: a leader exists, and every member (in its config) has applied every acknowledged write. */
  private converged(): boolean {
    const l = this.leaderNode();
    if (!l || !l.rn) return false;
    const cs = l.rn.raft.confState();
    for (const id of [...cs.voters, ...cs.learners]) {
      const n = this.nodes.get(id);
      if (n && this.leftDown.has(id)) continue;
      if (!n || n.applied < this.maxAckedIndex) return false;
    }
    return true;
  }

  run(): SimResult {
    let tick = 0;
    let ticksToLeader = -1;
    let ticksToConverge = -1;
    for (; tick < this.opts.faultTicks && this.checker.ok; tick++) this.runTick(tick, true);
    if (this.checker.ok) {
      this.healAll();
      let ok = false;
      for (let i = 0; i < this.opts.livenessTicks && this.checker.ok; i++, tick++) {
        this.runTick(tick, false);
        if (ticksToLeader < 0 && this.leaderNode()) ticksToLeader = i + 1;
        if (ticksToLeader < 0 && i + 1 >= this.opts.leaderTicks) break;
        if (this.converged()) {
          ticksToConverge = i + 1;
          ok = true;
          break;
        }
      }
      if (!ok && this.checker.ok) {
        const l = this.leaderNode();
        this.checker.violations.push({
          rule: "Liveness",
          detail: l
            ? `after healing, acknowledged writes up to ${this.maxAckedIndex} not applied on every member within ${this.opts.livenessTicks} ticks (${[...this.nodes.values()].map((n) => `${n.id}:${n.applied}`).join(" ")})`
            : `after healing with every node up, no leader within ${this.opts.leaderTicks} ticks`,
          at: this.now,
        });
      }
    }
    return {
      seed: this.opts.seed,
      nodes: this.opts.nodes,
      violations: this.checker.violations,
      faults: this.faults,
      workload: this.workload,
      stats: {
        ticks: tick,
        messages: this.messages,
        acked: this.acked,
        readsServed: this.readsServed,
        leaders: this.termsWithLeader.size,
        maxCommit: this.checker.maxCommit,
        ticksToLeader,
        ticksToConverge,
      },
      trace: this.trace,
    };
  }
}

/** Runs one seed; a thrown assertion inside Raft is reported as a violation too. */
export function runSeed(o: SimOptions): SimResult {
  const sim = new Simulator(o);
  try {
    return sim.run();
  } catch (err) {
    const e = err as Error;
    sim.checker.violations.push({ rule: "Crash", detail: `${e.name}: ${e.message}\n${e.stack ?? ""}`, at: sim.checker.now });
    return {
      seed: o.seed,
      nodes: o.nodes,
      violations: sim.checker.violations,
      faults: sim.faults,
      workload: sim.workload,
      stats: { ticks: 0, messages: 0, acked: 0, readsServed: 0, leaders: 0, maxCommit: sim.checker.maxCommit, ticksToLeader: -1, ticksToConverge: -1 },
      trace: [],
    };
  }
}

export function replayCommand(seed: number, nodes: number): string {
  return `bun scripts/sim.ts --seed ${seed} --nodes ${nodes}`;
}
