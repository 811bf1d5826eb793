// Deterministic cluster simulator: the runtime (src/node) over its in-memory twins, with seeded network
// faults, crashes, restarts and workload, checked at every step.
import { assert } from "../../src/errors.ts";
import { MemoryRaftStorage, type PersistRequest } from "../../src/node/memory-storage.ts";
import { RaftNode } from "../../src/node/raft-node.ts";
import { RegisterStateMachine, type RegisterResult } from "../../src/node/state-machine.ts";
import { MemoryNetwork, type MemoryTransport } from "../../src/node/transport.ts";
import { Rand } from "../../src/raft/rand.ts";
import { MemoryStorage, bootstrapStorage } from "../../src/raft/storage.ts";
import { NONE, type ConfChange, type Entry, type Message, type NodeId } from "../../src/raft/types.ts";
import { Checker, digest, type SimEvent, type Violation } from "./checkers.ts";

export const FAULT_KINDS = [
  "drop",
  "duplicate",
  "replay-late",
  /** A late copy (replay-late) reached a node already in a later term than the message's. */
  "late-across-terms",
  "replay-acks",
  "delay",
  "partition-symmetric",
  "partition-asymmetric",
  "isolate-leader",
  "bridge",
  "crash",
  "torn-crash",
  "crash-after-write",
  "crash-mid-write",
  /** A crash (torn, or with the write in flight) hit the write that installs a received snapshot. */
  "crash-mid-install",
  /** A snapshot message lost on its way (the stream broke): the leader must send it again. */
  "snapshot-cut",
  /** The sender's transport reported a cut-off snapshot transfer (RaftNode.reportSnapshot(id, false)). */
  "snapshot-cut-reported",
  "slow-write",
  "restart",
  "pause",
  /** Disruption probes: a minority of followers cut off both ways, then healed. */
  "rejoin",
  /** Disruption probes: a minority of followers that hear nothing but can still send. */
  "deaf",
  /** Disruption probes: a minority of followers cut off from the leader only (a flaky link). */
  "leader-link",
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export const WORKLOAD_KINDS = [
  "propose",
  "propose-batch",
  "propose-server-batch",
  "propose-in-apply",
  "read-index",
  "transfer",
  "conf-change",
  /** Membership changes proposed, by kind (a learner added, promoted, a voter demoted, a member removed, the leader removing itself). */
  "add-learner",
  "promote-learner",
  "demote-voter",
  "remove-member",
  "remove-leader",
  "snapshot",
] as const;
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
  /** Work budget of one run: past it the run fails (a runaway bug must not eat the machine). */
  messagesMax?: number;
  writesMax?: number;
  /** After the liveness phase, on half the seeds, cut a minority off a stable leader and check it is not disrupted (default on). */
  probe?: boolean;
  /** Raft switches (tests turn them off to prove the Disruption check fires). */
  raft?: { preVote?: boolean; checkQuorum?: boolean };
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
    writes: number;
    acked: number;
    readsServed: number;
    leaders: number;
    maxCommit: number;
    /** Ticks after healing until a leader existed, and until every member caught up (-1: never). */
    ticksToLeader: number;
    ticksToConverge: number;
    /** Disruption probes run (0 or 1: skipped when the configuration has no minority to cut). */
    probes: number;
    /** Commits and elections checked against the membership of the committed log (Config / Vote Quorum). */
    configCommits: number;
    configCommitsUnchecked: number;
    configElections: number;
    configElectionsUnchecked: number;
  };
  readonly trace: readonly string[];
}

/** Micro-steps per tick: message latency is counted in micro-steps, so a round trip fits in a tick. */
const STEPS_PER_TICK = 10;

/**
 * Default work budget per run, about 10x the most any of seeds 1..1000 (3 and 5 nodes) used
 * (93k messages, 2.8k writes): a runaway bug fails its seed in seconds instead of eating the machine.
 */
export const SIM_MESSAGES_MAX = 1_000_000;
export const SIM_WRITES_MAX = 30_000;

/** One simulated process: a RaftNode over the twins, and the disk that survives it. */
interface SimNode {
  readonly id: NodeId;
  up: boolean;
  /** The current incarnation (undefined while down). */
  node: RaftNode<RegisterResult> | undefined;
  sm: RegisterStateMachine | undefined;
  storage: MemoryRaftStorage | undefined;
  transport: MemoryTransport | undefined;
  /** The durable state: survives crashes. */
  readonly disk: MemoryStorage;
  /** Index the last incarnation's state machine reflected (kept across a crash for the liveness report). */
  applied: number;
  lastRole: string;
  lastTerm: number;
  /** The commit index last reported (see observeCommit); reset when the node restarts. */
  commitSeen: number;
  /** As leader: the commit index up to which Durable Quorum was checked at commit time (see checkLeaderCommit). */
  leaderCommitChecked: number;
  /** A slow write (a disk stall) started in the fault phase lasts until this micro-step. */
  stalledUntil: number;
  /** The voters of the last two configurations seen by checkLeaderCommit. */
  commitVoters: readonly NodeId[];
  commitPrevVoters: readonly NodeId[];
  restarts: number;
  /** Paused (like SIGSTOP) until this micro-step: no ticks, messages wait. */
  pausedUntil: number;
  /**
   * As leader of `term` (Config Quorum at the leader): the commit index checked up to, and the index
   * it had applied when it was (its membership since then is one of the committed log's in between).
   */
  cq: { term: number; checked: number; applied: number };
}

function sameIds(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Key of the directed link from -> to in the set of cut links. */
const link = (from: NodeId, to: NodeId): number => from * 1024 + to;

const enc = new TextEncoder();
const dec = new TextDecoder();

export class Simulator {
  readonly opts: Required<Omit<SimOptions, "keepTrace" | "raft">> & { keepTrace: boolean; raft: NonNullable<SimOptions["raft"]> };
  readonly rand: Rand;
  readonly checker = new Checker();
  readonly nodes = new Map<NodeId, SimNode>();
  /** The same nodes, for the hot loops. */
  private readonly nodeList: SimNode[] = [];
  /** Every id that may ever be a member: the initial voters plus one spare. */
  readonly universe: NodeId[];
  private now = 0;
  private readonly queue = new Map<number, Message[]>();
  /** The last acknowledgements sent to each node, for replaying them when it leads again. */
  private readonly acksTo = new Map<NodeId, Message[]>();
  private readonly net = new MemoryNetwork();
  /** Directed links that drop everything: link(from, to). */
  private blocked = new Set<number>();
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
  /** Client requests whose promise has not settled (their callbacks need a turn of the microtask queue). */
  private clientsWaiting = 0;
  readonly faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  readonly workload = Object.fromEntries(WORKLOAD_KINDS.map((k) => [k, 0])) as Record<WorkloadKind, number>;
  private messages = 0;
  private writes = 0;
  private readonly messagesMax: number;
  private readonly writesMax: number;
  private acked = 0;
  private maxAckedIndex = 0;
  private readsServed = 0;
  private readonly trace: string[] = [];
  private readonly termsWithLeader = new Set<number>();
  /** Copies made by the replay-late fault (to see which arrive in a later term). */
  private readonly lateCopies = new WeakSet<Message>();
  private probes = 0;
  /** Config Quorum (at the leader) and Vote Quorum: indexes and elections checked, and those whose membership could not be told. */
  private configChecked = 0;
  private configUnchecked = 0;
  private voteUnchecked = 0;

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
      messagesMax: o.messagesMax ?? SIM_MESSAGES_MAX,
      writesMax: o.writesMax ?? SIM_WRITES_MAX,
      probe: o.probe ?? true,
      raft: o.raft ?? {},
    };
    this.messagesMax = this.opts.messagesMax;
    this.writesMax = this.opts.writesMax;
    this.net.route = (m) => this.send(m);
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
    this.emit({ kind: "bootstrap", voters, index: voters.length });
    for (const id of this.universe) {
      const disk = new MemoryStorage();
      // The spare starts empty: it only learns the cluster if it is added.
      if (id <= o.nodes) bootstrapStorage(disk, voters);
      const n: SimNode = {
        id,
        up: false,
        node: undefined,
        sm: undefined,
        storage: undefined,
        transport: undefined,
        disk,
        applied: 0,
        lastRole: "",
        lastTerm: -1,
        commitSeen: 0,
        leaderCommitChecked: 0,
        stalledUntil: 0,
        commitVoters: [],
        commitPrevVoters: [],
        restarts: 0,
        pausedUntil: 0,
        cq: { term: -1, checked: 0, applied: 0 },
      };
      this.nodes.set(id, n);
      this.nodeList.push(n);
      // Bootstrap writes are durable before the node starts.
      this.emit({ kind: "persist", node: id, entries: disk.allEntries().map(digest), hardState: disk.getHardState() });
    }
  }

  /** Starts every node (the constructor cannot await the first Ready loops). */
  private async startAll(): Promise<void> {
    for (const n of this.nodes.values()) {
      this.start(n);
      if (this.continuationDue()) await this.drain();
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
    n.commitSeen = 0;
    n.leaderCommitChecked = 0;
    n.cq = { term: -1, checked: 0, applied: 0 };
    const sm = new RegisterStateMachine();
    sm.onApply = (e, value, ctx) => {
      n.applied = e.index;
      // The configuration the node holds as it applies (the one its commit of this entry was decided in).
      this.observeCommit(n);
      this.emit({ kind: "apply", node: n.id, entry: digest(e), value });
      if (ctx !== undefined) {
        assert(ctx === value, `entry ${e.index} applied with the context of another proposal (${String(ctx)} for ${value})`);
        this.acknowledge(value, e.index);
      }
    };
    sm.onRestore = (index) => {
      n.applied = index;
      this.emit({ kind: "restore", node: n.id, index });
    };
    const storage = new MemoryRaftStorage(n.disk, {
      persistSteps: () => this.persistSteps(n),
      onDurable: (p) => this.onDurable(n, p),
      onCrash: (how, p) => this.crash(n, how, p),
    });
    const transport = this.net.attach(n.id);
    n.sm = sm;
    n.storage = storage;
    n.transport = transport;
    n.up = true;
    n.lastRole = "";
    n.lastTerm = -1;
    n.node = new RaftNode<RegisterResult>({
      id: n.id,
      storage,
      transport,
      stateMachine: sm,
      rand: new Rand(this.opts.seed * 7919 + n.id * 104729 + n.restarts * 15485863),
      raft: {
        electionTicks: this.opts.electionTicks,
        heartbeatTicks: 1,
        msgBytesMax: this.msgBytesMax,
        inflightMessagesMax: this.inflightMessagesMax,
        ...this.opts.raft,
      },
      saveSnapshot: (meta, data) => {
        storage.saveImage(meta.index, data);
        return Promise.resolve();
      },
      readCtxPrefix: `${n.id}.${n.restarts}.`,
      onFatal: (err) => this.fatal(err),
      onApplied: () => this.onApplied(n),
    });
    this.observeRole(n);
  }

  /** Steps one write takes: none or a few per this seed's disk, and now and then a stall of ticks. */
  private persistSteps(n: SimNode): number {
    if (this.now < this.faultEnd && this.rand.chance(0.005)) {
      this.faults["slow-write"]++;
      const steps = STEPS_PER_TICK * (2 + this.rand.int(20));
      n.stalledUntil = this.now + steps;
      return steps;
    }
    return this.fsyncStepsMax > 0 ? 1 + this.rand.int(this.fsyncStepsMax) : 0;
  }

  private onDurable(n: SimNode, p: Parameters<MemoryRaftStorage["persist"]>[0]): void {
    if (++this.writes > this.writesMax) this.overBudget(`more than ${this.writesMax} writes`);
    // The role or term that caused this write changed before it (the checkers judge the write by it).
    this.observeRole(n);
    this.emit({
      kind: "persist",
      node: n.id,
      ...(p.snapshot ? { snapshot: { index: p.snapshot.meta.index, term: p.snapshot.meta.term } } : {}),
      entries: p.entries.map(digest),
      ...(p.hardState ? { hardState: p.hardState } : {}),
      ...(p.hardState && n.node ? { voters: n.node.rawNode.raft.confState().voters } : {}),
    });
    // A snapshot replaces the whole log: after installing it, the disk holds nothing from before it
    // (only the entries written with it). Skipped when the disk already had a newer snapshot.
    if (p.snapshot && n.disk.snapshot().meta.index === p.snapshot.meta.index) {
      const last = p.entries.length > 0 ? (p.entries[p.entries.length - 1] as Entry).index : p.snapshot.meta.index;
      if (n.disk.lastIndex() !== Math.max(last, p.snapshot.meta.index)) {
        this.checker.violations.push({
          rule: "Snapshot Install",
          detail: `node ${n.id} installed a snapshot at ${p.snapshot.meta.index} but its log ends at ${n.disk.lastIndex()}, not ${last}`,
          at: this.now,
        });
      }
    }
  }

  /** A runtime invariant broke inside its asynchronous Ready loop. */
  private fatal(err: unknown): void {
    const e = err as Error;
    this.checker.violations.push({ rule: "Crash", detail: `${e.name}: ${e.message}\n${e.stack ?? ""}`, at: this.now });
  }

  private overBudget(what: string): void {
    if (this.checker.violations.some((v) => v.rule === "Work Budget")) return;
    this.checker.violations.push({ rule: "Work Budget", detail: `seed ${this.opts.seed} (${this.opts.nodes} nodes): ${what}`, at: this.now });
  }

  /**
   * The process dies. An armed crash ("torn", "after-write") already decided the fate of the write it
   * hit (`hit`); a crash from outside keeps a seeded prefix of the write in flight (none to all of it:
   * what reached the disk before its fsync returned).
   */
  private crash(n: SimNode, how: "torn" | "after-write" | false, hit?: PersistRequest): void {
    this.log(`crash ${n.id}${how ? ` (${how})` : ""}`);
    this.faults[how === "torn" ? "torn-crash" : how === "after-write" ? "crash-after-write" : "crash"]++;
    n.up = false;
    if (!how) {
      if (n.storage?.writing) this.faults["crash-mid-write"]++;
      hit = n.storage?.crash((choices) => this.rand.int(choices));
    } else n.storage?.crash();
    if (how !== "after-write" && hit?.snapshot) this.faults["crash-mid-install"]++;
    n.transport?.close();
    n.node = undefined;
    n.sm = undefined;
    n.storage = undefined;
    n.transport = undefined;
    this.emit({ kind: "crash", node: n.id });
  }

  /**
   * Runs the runtime's asynchronous continuations (a persist that completed, a compaction) until none
   * is due: with them done, every input sees the node as a real process would between two events.
   */
  private async drain(): Promise<void> {
    for (let i = 0; this.continuationDue(); i++) {
      if (i > 1_000_000) throw new Error("drain: a continuation never ran");
      await null;
    }
    // A leader's commit also moves in a continuation (its own write done, a membership change applied).
    for (const n of this.nodeList) if (n.up) this.checkLeaderCommit(n);
  }

  private continuationDue(): boolean {
    for (const n of this.nodeList) {
      const node = n.node;
      if (!n.up || !node || !n.storage) continue;
      if ((node.persistInFlight && !n.storage.writing) || node.compacting) return true;
    }
    return false;
  }

  /**
   * Reports a node's commit index as it moves in memory (with the configuration it was decided in):
   * the runtime writes a commit-only change with the next write, so the durable one may trail it.
   */
  /**
   * Durable Quorum at the moment a leader commits, for the entries its own disk does not hold yet
   * (it sends appends while it writes them): a majority of its voters must durably hold each such
   * entry (same index and term on their disk, or a snapshot past it). The checker covers the entries
   * the leader holds; without this, a leader that counts its unwritten entries would pass, since by
   * the time it applies them its own write is done.
   */
  private checkLeaderCommit(n: SimNode): void {
    const r = n.node?.rawNode.raft;
    if (!r || r.role !== "leader") return;
    // The leader reports a commit it just computed under its current configuration; left to its
    // apply, a follower it told could report it first, under an older configuration (seed 20730).
    this.observeCommit(n);
    // The memberships the leader may have counted by since the last check (it may have applied a
    // change in the same turn as it computed the commit: seed 3626).
    const counted = this.checker.configsIn(n.cq.term === r.term ? n.cq.applied : r.log.applied, r.log.applied);
    this.checkConfigQuorum(n);
    const log = r.log;
    const c = log.committed;
    if (c <= n.leaderCommitChecked) return;
    const stable = log.unstable.snapshot ? 0 : log.unstable.offset - 1;
    const from = Math.max(n.leaderCommitChecked, stable) + 1;
    n.leaderCommitChecked = c;
    if (from > c) return;
    const voters = r.confState().voters;
    if (!sameIds(voters, n.commitVoters)) {
      n.commitPrevVoters = n.commitVoters;
      n.commitVoters = voters;
    }
    for (let i = from; i <= c; i++) {
      const t = log.term(i);
      const holders = (vs: readonly NodeId[]): number => {
        let h = 0;
        for (const v of vs) {
          const d = this.nodes.get(v)?.disk;
          if (d && (d.snapshot().meta.index >= i || (t !== undefined && d.term(i) === t))) h++;
        }
        return h;
      };
      const h = holders(voters);
      const prev = n.commitPrevVoters;
      if (h > voters.length / 2 || (prev.length > 0 && holders(prev) > prev.length / 2)) continue;
      if (counted?.some((cf) => cf.voters.length > 0 && holders(cf.voters) > cf.voters.length / 2)) continue;
      this.checker.violations.push({
        rule: "Durable Quorum",
        detail: `leader ${n.id} committed ${i} (term ${t}) while ${h} of voters ${voters.join(",")} durably held it`,
        at: this.now,
      });
      return;
    }
  }

  /**
   * Config Quorum at the leader, as its commit moves: every index it newly committed is durably held
   * by a majority of the voters of the membership it counted by, taken from the committed log at the
   * index it had applied (conf changes take effect as they apply), never from its own view of its
   * configuration. A removed node or a learner holding the entry never makes up the majority.
   */
  private checkConfigQuorum(n: SimNode): void {
    const r = n.node?.rawNode.raft;
    if (!r || r.role !== "leader") return;
    const log = r.log;
    if (n.cq.term !== r.term) {
      n.cq = { term: r.term, checked: log.committed, applied: log.applied };
      return;
    }
    const c = log.committed;
    if (c > n.cq.checked) {
      const configs = this.checker.configsIn(n.cq.applied, log.applied);
      if (!configs) this.configUnchecked++;
      for (let i = n.cq.checked + 1; configs && i <= c; i++) {
        const t = log.term(i);
        if (t === undefined) continue;
        const holds = (v: NodeId): boolean => {
          const d = this.nodes.get(v)?.disk;
          return d !== undefined && (d.snapshot().meta.index >= i || d.term(i) === t);
        };
        this.configChecked++;
        if (configs.some((cf) => cf.voters.filter(holds).length > cf.voters.length / 2)) continue;
        const holders = this.universe.filter(holds);
        this.checker.violations.push({
          rule: "Config Quorum",
          detail: `leader ${n.id} (term ${r.term}, applied ${log.applied}) committed ${i} (term ${t}) held durably by ${holders.join(",") || "nobody"}: no majority of ${configs.map((cf) => `voters ${cf.voters.join(",")} (membership at ${cf.index})`).join(" or ")}`,
          at: this.now,
        });
        break;
      }
      n.cq.checked = c;
    }
    n.cq.applied = log.applied;
  }

  private observeCommit(n: SimNode): void {
    const node = n.node;
    if (!node) {
      // Applying as the node starts (inside its constructor): its commit is the durable one.
      const c = Math.max(n.disk.getHardState().commit, n.disk.snapshot().meta.index);
      if (c <= n.commitSeen) return;
      n.commitSeen = c;
      this.emit({ kind: "commit", node: n.id, commit: c, held: c, voters: [] });
      return;
    }
    // Only the part of the log that is durable and the same in memory (entries still unstable
    // may replace a durable conflicting suffix): the checker's model is the durable log.
    const log = node.rawNode.raft.log;
    const c = log.committed;
    if (c <= n.commitSeen) return;
    n.commitSeen = c;
    const held = log.unstable.snapshot ? 0 : Math.min(c, log.unstable.offset - 1);
    this.emit({ kind: "commit", node: n.id, commit: c, held, voters: node.rawNode.raft.confState().voters });
  }

  private observeRole(n: SimNode): void {
    const node = n.node;
    if (!node) return;
    this.observeCommit(n);
    const r = node.rawNode.raft;
    if (r.role !== n.lastRole || r.term !== n.lastTerm) {
      n.lastRole = r.role;
      n.lastTerm = r.term;
      if (r.role === "leader") {
        if (!this.checker.leaderElected(n.id, r.term, r.log.applied)) this.voteUnchecked++;
        this.termsWithLeader.add(r.term);
        this.replayAcks(n.id, r.term);
      }
      this.emit({ kind: "role", node: n.id, term: r.term, role: r.role });
    }
  }

  /** Asynchronous seeds: each disk advances one step; completed writes continue the Ready loop. */
  private completeWrites(): void {
    for (const n of this.nodeList) {
      // A disk's clock only matters while it writes (a write's delay counts from its start).
      if (n.up && n.storage?.writing) n.storage.step();
    }
  }

  // ---- network ----

  /** The network behind every MemoryTransport: the runtime sends only what its persists made safe. */
  private send(m: Message): void {
    if (++this.messages > this.messagesMax) {
      this.overBudget(`more than ${this.messagesMax} messages`);
      return;
    }
    this.emit({ kind: "send", node: m.from, msg: m });
    if (m.type === "append-resp" && !m.reject) {
      let acks = this.acksTo.get(m.to);
      if (!acks) this.acksTo.set(m.to, (acks = []));
      acks.push(m);
      if (acks.length > 16) acks.shift();
    }
    this.enqueue(m, 1 + this.rand.int(this.delayMax));
    if (this.now < this.faultEnd && this.dupRate > 0 && this.rand.chance(this.dupRate)) {
      this.faults.duplicate++;
      this.enqueue(m, 1 + this.rand.int(this.delayMax * 3));
    }
    if (this.now < this.faultEnd && this.rand.chance(0.002)) {
      // A copy surfaces much later (a stale connection's buffer): after elections, in a later term.
      this.faults["replay-late"]++;
      const copy = { ...m };
      this.lateCopies.add(copy);
      this.enqueue(copy, STEPS_PER_TICK * (20 + this.rand.int(300)));
    }
  }

  /**
   * A node that leads again may get, very late, the acknowledgements followers sent it when it led in
   * an earlier term (any message may arrive any number of times, any time later).
   */
  private replayAcks(id: NodeId, term: number): void {
    const acks = this.acksTo.get(id);
    if (!acks || this.now >= this.faultEnd || !this.rand.chance(0.5)) return;
    for (const m of acks) {
      if (m.term >= term) continue;
      this.faults["replay-acks"]++;
      this.enqueue(m, 1 + this.rand.int(STEPS_PER_TICK * 5));
    }
  }

  /** Callbacks due at a micro-step (a transport's reports to its node). */
  private readonly later: { at: number; run: () => void }[] = [];

  /** The sender's transport tells its node, a little later, how a snapshot transfer ended. */
  private reportSnapshot(m: Message, ok: boolean): void {
    const sender = this.nodes.get(m.from);
    if (!sender) return;
    const incarnation = sender.restarts;
    this.later.push({
      at: this.now + 1 + this.rand.int(this.delayMax),
      run: () => {
        const node = sender.node;
        if (!sender.up || !node || sender.restarts !== incarnation) return;
        if (!ok) this.faults["snapshot-cut-reported"]++;
        this.log(`snapshot ${m.from} -> ${m.to} reported ${ok ? "ok" : "failed"}`);
        node.reportSnapshot(m.to, ok);
        this.observeRole(sender);
      },
    });
  }

  private runLater(): void {
    for (let i = 0; i < this.later.length; ) {
      const t = this.later[i] as { at: number; run: () => void };
      if (t.at > this.now) {
        i++;
        continue;
      }
      this.later.splice(i, 1);
      t.run();
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

  /** Takes the messages due now off the queue, in a random order (same-instant arrivals reorder). */
  private takeDue(): Message[] | undefined {
    const q = this.queue.get(this.now);
    if (!q) return undefined;
    this.queue.delete(this.now);
    for (let i = q.length - 1; i > 0; i--) {
      const j = this.rand.int(i + 1);
      const t = q[i] as Message;
      q[i] = q[j] as Message;
      q[j] = t;
    }
    return q;
  }

  /** Delivers q[from..] until a delivery leaves a runtime continuation due; returns the next position. */
  private deliverUntilDrain(q: Message[], from: number): number {
    for (let i = from; i < q.length; i++) {
      if (!this.checker.ok) return q.length;
      const m = q[i] as Message;
      const dst = this.nodes.get(m.to);
      if (!dst || !dst.up || !dst.node) continue;
      if (this.blocked.size > 0 && this.blocked.has(link(m.from, m.to))) continue;
      if (dst.pausedUntil > this.now) {
        this.enqueue(m, dst.pausedUntil - this.now + this.rand.int(3));
        continue;
      }
      if (this.now < this.faultEnd && this.dropRate > 0 && this.rand.chance(this.dropRate)) {
        this.faults.drop++;
        continue;
      }
      if (m.type === "snapshot" && this.now < this.faultEnd) {
        // A snapshot transfer is long: its stream breaks, or the receiver dies while installing it.
        if (this.rand.chance(0.2)) {
          this.faults["snapshot-cut"]++;
          this.log(`snapshot ${m.from} -> ${m.to} at ${m.snapshot.meta.index} cut off`);
          // Half the time the sender's transport notices (else the leader retries on its own timer).
          if (this.rand.chance(0.5)) this.reportSnapshot(m, false);
          continue;
        }
        if (this.rand.chance(0.2)) dst.storage?.armTornCrash((steps) => this.rand.int(steps));
      }
      // The transport reports a transfer it completed (the receiver holds the bytes), on a later turn.
      if (m.type === "snapshot" && this.rand.chance(0.5)) this.reportSnapshot(m, true);
      if (this.lateCopies.has(m) && (dst.node as RaftNode<RegisterResult>).rawNode.raft.term > m.term) this.faults["late-across-terms"]++;
      this.net.deliver(m);
      this.observeRole(dst);
      this.checkLeaderCommit(dst);
      if (dst.node?.persistInFlight && this.continuationDue()) return i + 1;
    }
    return q.length;
  }

  // ---- faults ----

  private get faultEnd(): number {
    return this.opts.faultTicks * STEPS_PER_TICK;
  }

  private leaderNode(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      if (n.up && n.node && n.node.rawNode.raft.role === "leader" && (!best || n.node.rawNode.raft.term > (best.node as RaftNode<RegisterResult>).rawNode.raft.term)) best = n;
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
        this.blocked.add(link(a, b));
        this.blocked.add(link(b, a));
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
            if (a !== b) this.blocked.add(link(a, b));
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
      this.log(`${kind} ${[...this.blocked].map((k) => `${Math.floor(k / 1024)}>${k % 1024}`).join(",")} until ${this.partitionUntil}`);
    }
    if (this.rand.chance(0.015)) {
      const up = [...this.nodes.values()].filter((n) => n.up);
      if (up.length > 0) {
        const n = this.rand.pick(up);
        const how = this.rand.int(4);
        if (how <= 1) n.storage?.armTornCrash((steps) => this.rand.int(steps));
        else if (how === 2) n.storage?.armCrashAfterWrite(true);
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

  /** Client requests to a node that believes it leads; `changes`: also transfers and membership changes. */
  private runWorkload(changes = true): void {
    // Clients talk to any node that believes it leads (a deposed leader may not know yet).
    const leaders = [...this.nodes.values()].filter((n) => n.up && n.node && n.pausedUntil <= this.now && n.node.rawNode.raft.role === "leader");
    if (leaders.length === 0) return;
    const l = this.rand.pick(leaders);
    const node = l.node;
    const sm = l.sm;
    if (!node || !sm) return;
    const rn = node.rawNode;
    if (this.rand.chance(0.6)) {
      const k = 1 + this.rand.int(3);
      if (k > 1 && this.rand.chance(0.5)) {
        // One batch sharing one persist, as the server proposes what arrived in one turn.
        const values = Array.from({ length: k }, () => `v${++this.counter}`);
        for (const value of values) this.emit({ kind: "write-invoke", value });
        if (this.rand.chance(0.5)) {
          this.workload["propose-batch"]++;
          const out = node.proposeMany(values.map((v) => enc.encode(v)));
          out.forEach((o, i) => {
            if ("result" in o) this.clientWrite(values[i] as string, o.result);
          });
        } else {
          // The server's hot path: no promise per entry; an entry is answered when it applies.
          this.workload["propose-server-batch"]++;
          // Each value rides with its entry as the proposal's context: the register hands it back
          // when the entry applies as proposed (acknowledged then), never otherwise.
          node.proposeBatch(
            values.map((v) => enc.encode(v)),
            values,
            () => {},
          );
        }
      } else {
        for (let i = 0; i < k; i++) this.propose(node);
      }
    }
    if (this.rand.chance(0.3)) {
      const ctx = `r${++this.counter}`;
      this.emit({ kind: "read-invoke", id: ctx });
      this.workload["read-index"]++;
      this.clientsWaiting++;
      node.readIndex().then(
        () => {
          this.clientsWaiting--;
          this.readsServed++;
          this.emit({ kind: "read-return", id: ctx, value: sm.value });
        },
        () => this.clientsWaiting--,
      );
    }
    if (!changes) return;
    if (this.rand.chance(0.01)) {
      const voters = rn.raft.confState().voters.filter((v) => v !== l.id);
      if (voters.length > 0) {
        const to = this.rand.pick(voters);
        this.log(`transfer ${l.id} -> ${to}`);
        if (node.transferLeadership(to) === "ok") this.workload.transfer++;
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
      const lastBefore = rn.raft.log.lastIndex();
      node.proposeMembershipChange(cc).catch(() => {});
      const proposed = rn.raft.log.lastIndex() > lastBefore;
      this.log(`conf-change ${cc.type} ${cc.node}: ${proposed ? "proposed" : "refused"}`);
      if (proposed) {
        this.workload["conf-change"]++;
        if (cc.type === "add-learner") this.workload[isVoter ? "demote-voter" : "add-learner"]++;
        else if (cc.type === "add-voter" && isLearner) this.workload["promote-learner"]++;
        else this.workload[cc.node === l.id ? "remove-leader" : "remove-member"]++;
      }
    }
  }

  private propose(node: RaftNode<RegisterResult>): void {
    const value = `v${++this.counter}`;
    this.emit({ kind: "write-invoke", value });
    this.workload.propose++;
    this.clientWrite(value, node.propose(enc.encode(value)));
  }

  /** Follows a client's write: acknowledged (checked against the applied log) or failed. */
  private clientWrite(value: string, result: Promise<RegisterResult>): void {
    this.clientsWaiting++;
    result.then(
      (r) => {
        this.clientsWaiting--;
        this.acknowledge(value, r.index);
      },
      () => this.clientsWaiting--,
    );
  }

  private acknowledge(value: string, index: number): void {
    this.acked++;
    this.maxAckedIndex = Math.max(this.maxAckedIndex, index);
    this.emit({ kind: "write-ack", value });
  }

  /**
   * Called by a node's runtime after a Ready applied entries, before that Ready is advanced: now and
   * then the leader's server proposes right there (a forwarded write answered as entries apply), an
   * input the runtime must defer until the Ready is done.
   */
  private onApplied(n: SimNode): void {
    const node = n.node;
    if (!node || this.now >= this.faultEnd || node.rawNode.raft.role !== "leader" || !this.rand.chance(0.05)) return;
    this.workload["propose-in-apply"]++;
    this.propose(node);
  }

  private maybeCompact(): void {
    if (!this.rand.chance(0.08)) return;
    const up = [...this.nodes.values()].filter((n) => n.up && n.node && n.storage);
    if (up.length === 0) return;
    const n = this.rand.pick(up);
    const node = n.node as RaftNode<RegisterResult>;
    const storage = n.storage as MemoryRaftStorage;
    if (n.applied - storage.firstIndex() < 4) return;
    node.snapshot().catch((err: unknown) => this.fatal(err));
    this.workload.snapshot++;
    this.log(`snapshot ${n.id} at ${n.applied}`);
  }


  // ---- disruption probe ----

  /**
   * The leader `l` is settled: every voter of its configuration is up and follows it in its term, its
   * membership changes are applied, no transfer is under way and no disk is stalled (nothing
   * legitimate would move a term).
   */
  private settled(l: SimNode | undefined): boolean {
    const r = l?.node?.rawNode.raft;
    if (!l || !r || r.role !== "leader" || r.leadTransferee !== NONE || r.pendingConfIndex > r.log.applied) return false;
    for (const id of r.confState().voters) {
      const v = this.nodes.get(id);
      const f = v?.node?.rawNode.raft;
      if (!v || !f || f.term !== r.term || f.lead !== l.id) return false;
      // A disk still stalled from the fault phase silences its node (its Ready loop waits).
      if (v.stalledUntil > this.now) return false;
    }
    return true;
  }

  /**
   * A partitioned node that comes back must not depose a healthy leader (what pre-vote and
   * check-quorum are for). Once the cluster is settled under one leader, a minority of its followers
   * is cut off, both ways ("rejoin"), inbound only ("deaf": they hear nothing and keep asking for
   * votes) or from the leader only ("leader-link": they still reach the other followers, whose lease
   * must refuse them), for 2-4 election timeouts, then healed; clients keep writing and snapshotting
   * on some probes. Until 2 election timeouts after healing, the majority must keep its leader and term
   * (Disruption), and then everyone must catch up (Liveness). Late copies of fault-phase messages still
   * in flight are dropped first: the probe judges a network with no fault but the cut. Returns the
   * next tick.
   */
  private async probeDisruption(tick: number): Promise<number> {
    for (const id of this.leftDown) {
      const n = this.nodes.get(id) as SimNode;
      if (n.up) continue;
      n.restarts++;
      this.log(`restart ${n.id} for the disruption probe`);
      this.start(n);
      if (this.continuationDue()) await this.drain();
    }
    this.leftDown.clear();
    for (const [at, q] of this.queue) {
      const kept = q.filter((m) => !this.lateCopies.has(m));
      if (kept.length === 0) this.queue.delete(at);
      else if (kept.length < q.length) this.queue.set(at, kept);
    }
    const e = this.opts.electionTicks;
    const settleMax = 40 * e;
    let key = "";
    let settledFor = 0;
    const settleFrom = tick;
    for (let i = 0; i < settleMax && settledFor < e && this.checker.ok; i++) {
      await this.runTick(tick++, "quiet");
      const l = this.leaderNode();
      if (this.settled(l)) {
        const k = `${l?.id}@${l?.node?.rawNode.raft.term}`;
        settledFor = k === key ? settledFor + 1 : 1;
        key = k;
      } else settledFor = 0;
    }
    if (!this.checker.ok) return tick;
    this.log(`settled after ${tick - settleFrom} ticks`);
    const l = this.leaderNode();
    if (settledFor < e || !l?.node) {
      this.checker.violations.push({ rule: "Liveness", detail: `no settled leader within ${settleMax} fault-free ticks with every node up`, at: this.now });
      return tick;
    }
    const r = l.node.rawNode.raft;
    const voters = r.confState().voters;
    const spare = voters.length - (Math.floor(voters.length / 2) + 1);
    if (spare < 1) return tick; // two voters: no minority to cut off
    const followers = voters.filter((v) => v !== l.id);
    for (let i = followers.length - 1; i > 0; i--) {
      const j = this.rand.int(i + 1);
      [followers[i], followers[j]] = [followers[j] as NodeId, followers[i] as NodeId];
    }
    const cut = followers.slice(0, 1 + this.rand.int(spare));
    const stable = voters.filter((v) => !cut.includes(v));
    const kind = this.rand.pick(["rejoin", "deaf", "leader-link"] as const);
    const clients = this.rand.chance(0.5);
    this.faults[kind]++;
    this.probes++;
    this.blocked = new Set();
    for (const c of cut) {
      for (const o of kind === "leader-link" ? [l.id] : this.universe) {
        if (o === c) continue;
        this.blocked.add(link(o, c));
        if (kind !== "deaf") this.blocked.add(link(c, o));
      }
    }
    // At least two election timeouts: every cut-off node times out at least once.
    const cutTicks = e * (2 + this.rand.int(3));
    this.log(`disruption probe: ${kind} ${cut.join(",")} for ${cutTicks} ticks; leader ${l.id}, term ${r.term}, stable ${stable.join(",")}${clients ? ", with clients" : ""}`);
    this.emit({ kind: "stable-start", nodes: stable, leader: l.id, term: r.term });
    for (let i = 0; i < cutTicks && this.checker.ok; i++) await this.runTick(tick++, clients ? "clients" : "quiet");
    this.blocked = new Set();
    this.log("disruption probe: healed");
    for (let i = 0; i < 2 * e && this.checker.ok; i++) await this.runTick(tick++, clients ? "clients" : "quiet");
    this.emit({ kind: "stable-end" });
    for (let i = 0; i < this.opts.livenessTicks && this.checker.ok; i++) {
      if (this.converged()) return tick;
      await this.runTick(tick++, "quiet");
    }
    if (this.checker.ok && !this.converged()) {
      this.checker.violations.push({
        rule: "Liveness",
        detail: `after the disruption probe (${kind} ${cut.join(",")}), acknowledged writes up to ${this.maxAckedIndex} not applied on every member within ${this.opts.livenessTicks} ticks`,
        at: this.now,
      });
    }
    return tick;
  }

  // ---- main loop ----

  private tickAll(): void {
    for (const n of this.nodeList) {
      if (!n.up || !n.node || n.pausedUntil > this.now) continue;
      n.node.tick();
      this.observeRole(n);
    }
  }

  /** One tick: "faults" (faults and the whole workload), "quiet" (nothing but Raft), "clients" (writes, reads, snapshots). */
  private async runTick(tick: number, mode: "faults" | "quiet" | "clients"): Promise<void> {
    this.checker.now = this.now;
    // Each phase runs synchronously; the runtime's continuations due (a persist done) run after it,
    // so every phase sees the nodes as processes would between two events.
    if (mode === "faults") {
      this.injectFaults(tick);
      if (this.continuationDue()) await this.drain();
    }
    // Clients during a disruption probe come at a third of the rate (enough to leave a cut-off node behind).
    if (mode === "faults" || (mode === "clients" && this.rand.chance(0.33))) {
      this.runWorkload(mode === "faults");
      if (this.continuationDue()) await this.drain();
      this.maybeCompact();
      if (this.continuationDue()) await this.drain();
    }
    this.tickAll();
    if (this.continuationDue()) await this.drain();
    for (let s = 0; s < STEPS_PER_TICK && this.checker.ok; s++) {
      this.now++;
      this.checker.now = this.now;
      const q = this.takeDue();
      // Synchronous runs between the (rarer) awaits keep the hot loop out of the async machinery.
      if (q) {
        for (let i = 0; i < q.length && this.checker.ok; ) {
          i = this.deliverUntilDrain(q, i);
          if (this.continuationDue()) await this.drain();
        }
      }
      if (this.later.length > 0) {
        this.runLater();
        if (this.continuationDue()) await this.drain();
      }
      this.completeWrites();
      if (this.continuationDue()) await this.drain();
    }
    // Let the clients' callbacks (acknowledgements, read results) run before the next tick.
    if (this.clientsWaiting > 0) await null;
  }

  private async healAll(): Promise<void> {
    this.blocked = new Set();
    for (const n of this.nodes.values()) {
      n.storage?.armTornCrash(undefined);
      n.storage?.armCrashAfterWrite(false);
      n.pausedUntil = 0;
      if (!n.up) {
        this.faults.restart++;
        n.restarts++;
        this.start(n);
        if (this.continuationDue()) await this.drain();
      }
    }
    // Half the seeds heal with a minority of voters left down: liveness must not need everyone.
    // A pending change may still remove one voter, so leave down a minority of (voters - 1).
    if (this.rand.chance(0.5)) {
      let ref: SimNode | undefined;
      for (const n of this.nodes.values()) if (n.node && (!ref || n.applied > ref.applied)) ref = n;
      const voters = ref?.node ? ref.node.rawNode.raft.confState().voters : [];
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
    if (!l || !l.node) return false;
    const cs = l.node.rawNode.raft.confState();
    for (const id of [...cs.voters, ...cs.learners]) {
      const n = this.nodes.get(id);
      if (n && this.leftDown.has(id)) continue;
      if (!n || n.applied < this.maxAckedIndex) return false;
    }
    return true;
  }

  async run(): Promise<SimResult> {
    let tick = 0;
    let ticksToLeader = -1;
    let ticksToConverge = -1;
    await this.startAll();
    for (; tick < this.opts.faultTicks && this.checker.ok; tick++) await this.runTick(tick, "faults");
    if (this.checker.ok) {
      await this.healAll();
      let ok = false;
      for (let i = 0; i < this.opts.livenessTicks && this.checker.ok; i++, tick++) {
        await this.runTick(tick, "quiet");
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
      // Half the seeds (the probe costs about a fifth of a run).
      if (ok && this.opts.probe && this.rand.chance(0.5)) tick = await this.probeDisruption(tick);
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
        writes: this.writes,
        acked: this.acked,
        readsServed: this.readsServed,
        leaders: this.termsWithLeader.size,
        maxCommit: this.checker.maxCommit,
        ticksToLeader,
        ticksToConverge,
        probes: this.probes,
        configCommits: this.configChecked,
        configCommitsUnchecked: this.configUnchecked,
        configElections: this.checker.configChecks.elections,
        configElectionsUnchecked: this.voteUnchecked,
      },
      trace: this.trace,
    };
  }
}

/** Runs one seed; a thrown assertion inside Raft is reported as a violation too. */
export async function runSeed(o: SimOptions): Promise<SimResult> {
  const sim = new Simulator(o);
  try {
    return await sim.run();
  } catch (err) {
    const e = err as Error;
    sim.checker.violations.push({ rule: "Crash", detail: `${e.name}: ${e.message}\n${e.stack ?? ""}`, at: sim.checker.now });
    return {
      seed: o.seed,
      nodes: o.nodes,
      violations: sim.checker.violations,
      faults: sim.faults,
      workload: sim.workload,
      stats: { ticks: 0, messages: 0, writes: 0, acked: 0, readsServed: 0, leaders: 0, maxCommit: sim.checker.maxCommit, ticksToLeader: -1, ticksToConverge: -1, probes: 0, configCommits: 0, configCommitsUnchecked: 0, configElections: 0, configElectionsUnchecked: 0 },
      trace: [],
    };
  }
}

export function replayCommand(seed: number, nodes: number): string {
  return `bun scripts/sim.ts --seed ${seed} --nodes ${nodes}`;
}
