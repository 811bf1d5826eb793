// Safety checkers for simulated Raft clusters, fed one event at a time (by the simulator or a hand-built trace).
import { type ConfChange, type Entry, type HardState, type Message, type NodeId, type Role, decodeConfChange } from "../../src/raft/types.ts";

export interface Violation {
  readonly rule: string;
  readonly detail: string;
  /** Simulator time (micro-steps) when found, -1 for hand-built traces. */
  readonly at: number;
}

/** What the checkers need to know about one log entry. */
export interface EntryDigest {
  readonly index: number;
  readonly term: number;
  /** Hash of (term, type, data). */
  readonly hash: number;
  /** A conf-change entry's change (Config Quorum follows the membership through the committed log). */
  readonly cc?: ConfChange;
}

/** The membership after the committed conf-change entry at `index` (index 0: before any). */
export interface CommittedConfig {
  readonly index: number;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export type SimEvent =
  /** A node was observed in a role (emitted on every change of role or term). */
  | { readonly kind: "role"; readonly node: NodeId; readonly term: number; readonly role: Role }
  /** A node made this durable, in this order: snapshot, entries (truncating at entries[0]), hard state. */
  | {
      readonly kind: "persist";
      readonly node: NodeId;
      readonly snapshot?: { readonly index: number; readonly term: number };
      readonly entries: readonly EntryDigest[];
      readonly hardState?: HardState;
      /** The writer's voters when it wrote (for Durable Quorum); absent in hand-built traces. */
      readonly voters?: readonly NodeId[];
    }
  /** A node handed a message to the network. */
  | { readonly kind: "send"; readonly node: NodeId; readonly msg: Message }
  /** A node's state machine applied a committed entry; `value` is the register write ("" if none). */
  | { readonly kind: "apply"; readonly node: NodeId; readonly entry: EntryDigest; readonly value: string }
  /** A node's commit index moved in memory, decided in (or learnt under) configuration `voters`. */
  | { readonly kind: "commit"; readonly node: NodeId; readonly commit: number; readonly held: number; readonly voters: readonly NodeId[] }
  /** A node's state machine was restored from a snapshot at `index`. */
  | { readonly kind: "restore"; readonly node: NodeId; readonly index: number }
  | { readonly kind: "crash"; readonly node: NodeId }
  /** The cluster was bootstrapped with these voters: entries 1..index are committed by fiat (before any persist event). */
  | { readonly kind: "bootstrap"; readonly voters: readonly NodeId[]; readonly index: number }
  /**
   * From here until "stable-end", `nodes` (a majority of the voters, with `leader` among them) are
   * connected and fault-free while the other voters are cut off and come back: none of `nodes` may
   * leave `term`, and `leader` must keep leading (Disruption).
   */
  | { readonly kind: "stable-start"; readonly nodes: readonly NodeId[]; readonly leader: NodeId; readonly term: number }
  | { readonly kind: "stable-end" }
  /** Register history (the client's view). */
  | { readonly kind: "write-invoke"; readonly value: string }
  | { readonly kind: "write-ack"; readonly value: string }
  | { readonly kind: "read-invoke"; readonly id: string }
  | { readonly kind: "read-return"; readonly id: string; readonly value: string };

export function hashBytes(h: number, data: Uint8Array): number {
  for (let i = 0; i < data.length; i++) h = Math.imul(h ^ (data[i] as number), 0x01000193);
  return h >>> 0;
}

export function entryHash(e: Entry): number {
  let h = Math.imul(0x811c9dc5 ^ e.term, 0x01000193);
  h = Math.imul(h ^ (e.type === "normal" ? 1 : 2), 0x01000193);
  return hashBytes(h, e.data);
}

export function digest(e: Entry): EntryDigest {
  if (e.type === "conf-change") return { index: e.index, term: e.term, hash: entryHash(e), cc: decodeConfChange(e.data) };
  return { index: e.index, term: e.term, hash: entryHash(e) };
}

/** The membership after applying `cc` to `c` (the core's rules: one change at a time). */
function nextConfig(c: CommittedConfig, index: number, cc: ConfChange): CommittedConfig {
  const voters = new Set(c.voters);
  const learners = new Set(c.learners);
  switch (cc.type) {
    case "add-voter":
      learners.delete(cc.node);
      voters.add(cc.node);
      break;
    case "add-learner":
      voters.delete(cc.node);
      learners.add(cc.node);
      break;
    case "remove-node":
      voters.delete(cc.node);
      learners.delete(cc.node);
      break;
  }
  const sorted = (x: Set<NodeId>): NodeId[] => [...x].sort((a, b) => a - b);
  return { index, voters: sorted(voters), learners: sorted(learners) };
}

/** Hash of a log prefix: the previous prefix hash folded with the entry's hash. */
function chain(prev: number, entryH: number): number {
  let h = Math.imul(prev ^ entryH, 0x9e3779b1);
  h ^= h >>> 15;
  return Math.imul(h, 0x85ebca77) >>> 0;
}

const key = (index: number, term: number): number => index * 1_000_003 + term;

function sameIds(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The checker's copy of one node's durable state. */
class NodeModel {
  snapIndex = 0;
  snapTerm = 0;
  /** Prefix hash at snapIndex (0 = the empty log, or unknown after a hand-built snapshot). */
  snapPrefix = 0;
  snapPrefixKnown = true;
  terms: number[] = [];
  prefixes: number[] = [];
  hardState: HardState = { term: 0, vote: 0, commit: 0 };
  lastApplied = 0;
  /** Term in which this node is leader right now, or -1. */
  leaderTerm = -1;
  /** The voters this node reported with its last two different configurations (Durable Quorum). */
  voters: readonly NodeId[] = [];
  prevVoters: readonly NodeId[] = [];
  /** Commit index in memory as last reported, and the configurations it was reported under. */
  memCommit = 0;
  cvoters: readonly NodeId[] = [];
  cprevVoters: readonly NodeId[] = [];
  /** The vote each term's durable hard state named, and each term's granted vote (kept across crashes). */
  readonly durableVotes = new Map<number, NodeId>();
  readonly grantedVotes = new Map<number, NodeId>();

  lastIndex(): number {
    return this.snapIndex + this.terms.length;
  }

  termAt(i: number): number | undefined {
    if (i === this.snapIndex) return this.snapTerm;
    if (i < this.snapIndex) return undefined;
    return this.terms[i - this.snapIndex - 1];
  }

  prefixAt(i: number): number | undefined {
    if (i === this.snapIndex) return this.snapPrefixKnown ? this.snapPrefix : undefined;
    if (i < this.snapIndex) return undefined;
    return this.prefixes[i - this.snapIndex - 1];
  }

  truncateFrom(i: number): void {
    const keep = Math.max(0, i - this.snapIndex - 1);
    this.terms.length = Math.min(this.terms.length, keep);
    this.prefixes.length = Math.min(this.prefixes.length, keep);
  }
}

export class Checker {
  readonly violations: Violation[] = [];
  /** Set by the simulator so violations carry a time. */
  now = -1;
  events = 0;
  private readonly nodes = new Map<NodeId, NodeModel>();
  private readonly leaders = new Map<number, NodeId>();
  /** Prefix hash of every (index, term) ever persisted anywhere: Log Matching. */
  private readonly prefixByKey = new Map<number, number>();
  /** Highest commit index persisted by any node, and the committed log's prefix hashes up to it. */
  private commitIndex = 0;
  /** The simulator reports commit indexes as they move in memory (see onMemCommit). */
  private memCommits = false;
  private readonly committedPrefix: (number | undefined)[] = [0];
  /** Highest commit index persisted by a node whose durable term was T: committed in a term <= T. */
  private readonly commitByTerm = new Map<number, number>();
  /** Entry applied at each index by the first node to apply it: State Machine Safety. */
  private readonly appliedHash: number[] = [];
  /** Register: log index of each written value, and the linearizability frontier. */
  private readonly valueIndex = new Map<string, number>([["", 0]]);
  private ackedFrontier = 0;
  private readFrontier = 0;
  private readonly readStart = new Map<string, number>();
  /** Conf changes of every entry persisted anywhere, by (index, term): what the committed log's ones change. */
  private readonly ccByKey = new Map<number, ConfChange>();
  /**
   * The membership through the committed log, oldest first (Config Quorum, Vote Quorum): derived from
   * the conf-change entries as they commit, never from what a node says its configuration is.
   * `configsKnown` turns false if a committed entry's term could not be told (a hand-built trace).
   */
  readonly configs: CommittedConfig[] = [{ index: 0, voters: [], learners: [] }];
  private configsKnown = true;
  /** Entries up to here were committed by the bootstrap (their membership is in `configs` already). */
  private bootstrapIndex = 0;
  /** Commits and elections checked against the committed membership (for coverage reports). */
  configChecks = { commits: 0, elections: 0 };
  /** Votes granted (vote-resp, not pre-vote) by term and candidate. */
  private readonly votesFor = new Map<string, Set<NodeId>>();
  /** The stable majority under watch (Disruption), if any. */
  private stable: { nodes: Set<NodeId>; leader: NodeId; term: number } | undefined;

  private model(id: NodeId): NodeModel {
    let m = this.nodes.get(id);
    if (!m) {
      m = new NodeModel();
      this.nodes.set(id, m);
    }
    return m;
  }

  private fail(rule: string, detail: string): void {
    this.violations.push({ rule, detail, at: this.now });
  }

  get ok(): boolean {
    return this.violations.length === 0;
  }

  /** Highest commit index persisted anywhere (for liveness checks). */
  get maxCommit(): number {
    return this.commitIndex;
  }

  observe(ev: SimEvent): void {
    this.events++;
    switch (ev.kind) {
      case "role":
        return this.onRole(ev.node, ev.term, ev.role);
      case "persist":
        return this.onPersist(ev.node, ev.snapshot, ev.entries, ev.hardState, ev.voters);
      case "send":
        return this.onSend(ev.node, ev.msg);
      case "apply":
        return this.onApply(ev.node, ev.entry, ev.value);
      case "commit":
        return this.onMemCommit(ev.node, ev.commit, ev.held, ev.voters);
      case "restore": {
        const m = this.model(ev.node);
        m.lastApplied = ev.index;
        return;
      }
      case "crash": {
        const m = this.model(ev.node);
        m.leaderTerm = -1;
        m.memCommit = 0; // the next incarnation starts from its durable commit
        return;
      }
      case "bootstrap":
        this.bootstrapIndex = ev.index;
        this.configs.push({ index: ev.index, voters: [...ev.voters].sort((a, b) => a - b), learners: [] });
        return;
      case "stable-start":
        this.stable = { nodes: new Set(ev.nodes), leader: ev.leader, term: ev.term };
        return;
      case "stable-end":
        this.stable = undefined;
        return;
      case "write-invoke":
        return;
      case "write-ack": {
        const idx = this.valueIndex.get(ev.value);
        if (idx === undefined) {
          this.fail("Acknowledged Write Applied", `write ${JSON.stringify(ev.value)} acknowledged but never applied`);
          return;
        }
        this.ackedFrontier = Math.max(this.ackedFrontier, idx);
        return;
      }
      case "read-invoke":
        this.readStart.set(ev.id, Math.max(this.ackedFrontier, this.readFrontier));
        return;
      case "read-return": {
        const frontier = this.readStart.get(ev.id);
        this.readStart.delete(ev.id);
        const idx = this.valueIndex.get(ev.value);
        if (frontier === undefined) {
          this.fail("Linearizable Read", `read ${ev.id} returned without being invoked`);
          return;
        }
        if (idx === undefined) {
          this.fail("Linearizable Read", `read ${ev.id} returned ${JSON.stringify(ev.value)}, which was never committed`);
          return;
        }
        if (idx < frontier) {
          this.fail(
            "Linearizable Read",
            `read ${ev.id} returned the value written at index ${idx}, but a write or read at index ${frontier} completed before it began (stale read)`,
          );
        }
        this.readFrontier = Math.max(this.readFrontier, idx);
        return;
      }
    }
  }

  private onRole(node: NodeId, term: number, role: Role): void {
    const m = this.model(node);
    const st = this.stable;
    if (st && st.nodes.has(node) && (term !== st.term || (node === st.leader && role !== "leader"))) {
      this.fail(
        "Disruption",
        `node ${node} of the stable majority ${[...st.nodes].join(",")} (leader ${st.leader}, term ${st.term}) became ${role} in term ${term} while the other voters were cut off or rejoining`,
      );
      this.stable = undefined; // one report per window
    }
    if (role !== "leader") {
      m.leaderTerm = -1;
      return;
    }
    const prev = this.leaders.get(term);
    if (prev !== undefined && prev !== node) {
      this.fail("Election Safety", `two leaders in term ${term}: ${prev} and ${node}`);
    }
    this.leaders.set(term, node);
    m.leaderTerm = term;
    // Leader Completeness: the new leader's log holds every entry committed in an earlier term.
    let c = 0;
    for (const [t, ci] of this.commitByTerm) if (t < term && ci > c) c = ci;
    if (c === 0) return;
    if (m.lastIndex() < c) {
      this.fail("Leader Completeness", `leader ${node} of term ${term} has last index ${m.lastIndex()} < ${c}, committed in an earlier term`);
      return;
    }
    const p = m.prefixAt(c);
    const want = this.committedPrefix[c];
    if (p !== undefined && want !== undefined && p !== want) {
      this.fail("Leader Completeness", `leader ${node} of term ${term} lacks the committed entry at ${c}`);
    }
  }

  private onPersist(
    node: NodeId,
    snap: { index: number; term: number } | undefined,
    entries: readonly EntryDigest[],
    hs: HardState | undefined,
    voters?: readonly NodeId[],
  ): void {
    const m = this.model(node);
    if (snap && snap.index > m.snapIndex) {
      const p = this.prefixByKey.get(key(snap.index, snap.term)) ?? (snap.index <= this.commitIndex ? this.committedPrefix[snap.index] : undefined);
      const want = snap.index <= this.commitIndex ? this.committedPrefix[snap.index] : undefined;
      if (p !== undefined && want !== undefined && p !== want) {
        this.fail("State Machine Safety", `node ${node} installed a snapshot at ${snap.index} that disagrees with the committed log`);
      }
      m.snapIndex = snap.index;
      m.snapTerm = snap.term;
      m.snapPrefix = p ?? 0;
      m.snapPrefixKnown = p !== undefined;
      m.terms = [];
      m.prefixes = [];
    }
    if (entries.length > 0) {
      const first = (entries[0] as EntryDigest).index;
      // Anything already stored from `first` on that differs is being overwritten.
      for (let i = first; i <= m.lastIndex(); i++) {
        const e = entries[i - first];
        if (e !== undefined && m.termAt(i) === e.term) continue;
        if (i <= m.snapIndex) continue;
        if (m.leaderTerm !== -1 && m.leaderTerm === m.hardState.term) {
          this.fail("Leader Append-Only", `leader ${node} of term ${m.leaderTerm} overwrote its entry at ${i}`);
        }
        if (i <= m.hardState.commit) {
          this.fail("State Machine Safety", `node ${node} overwrote entry ${i} at or below its commit ${m.hardState.commit} (committed entry lost)`);
        }
        break;
      }
      m.truncateFrom(first);
      if (first > m.lastIndex() + 1) {
        this.fail("Log Matching", `node ${node} persisted entry ${first} after a gap (last ${m.lastIndex()})`);
        return;
      }
      for (const e of entries) {
        if (e.cc) this.ccByKey.set(key(e.index, e.term), e.cc);
        if (e.index <= m.snapIndex) continue;
        const prev = m.prefixAt(e.index - 1);
        if (prev === undefined) {
          // Unknown base (hand-built snapshot): track terms only.
          m.terms.push(e.term);
          m.prefixes.push(0);
          continue;
        }
        const p = chain(prev, e.hash);
        m.terms.push(e.term);
        m.prefixes.push(p);
        const k = key(e.index, e.term);
        const seen = this.prefixByKey.get(k);
        if (seen === undefined) this.prefixByKey.set(k, p);
        else if (seen !== p) {
          this.fail("Log Matching", `node ${node} has entry (${e.index}, term ${e.term}) with a log prefix unlike another node's`);
        }
      }
    }
    if (hs) {
      const voted = m.durableVotes.get(hs.term);
      if (voted !== undefined && voted !== hs.vote) {
        this.fail("Vote Once", `node ${node} voted for ${voted} in term ${hs.term}, then durably for ${hs.vote === 0 ? "nobody" : hs.vote}`);
      }
      if (hs.vote !== 0) m.durableVotes.set(hs.term, hs.vote);
      if (hs.term < m.hardState.term) this.fail("Monotonic Term", `node ${node} term went from ${m.hardState.term} to ${hs.term}`);
      if (hs.commit < m.hardState.commit) this.fail("Monotonic Commit", `node ${node} commit went from ${m.hardState.commit} to ${hs.commit}`);
      if (hs.commit > m.lastIndex()) this.fail("Commit Within Log", `node ${node} commit ${hs.commit} past its durable last index ${m.lastIndex()}`);
      m.hardState = hs;
      this.commitByTerm.set(hs.term, Math.max(this.commitByTerm.get(hs.term) ?? 0, hs.commit));
      if (voters && voters.length > 0 && !sameIds(voters, m.voters)) {
        m.prevVoters = m.voters;
        m.voters = voters;
      }
      if (!this.memCommits && voters && voters.length > 0) this.onCommit(node, m, hs.commit, m.voters, m.prevVoters);
      else if (!this.memCommits) this.onCommit(node, m, hs.commit, [], []);
    }
  }

  private onCommit(node: NodeId, m: NodeModel, c: number, voters: readonly NodeId[], prevVoters: readonly NodeId[]): void {
    const g = this.commitIndex;
    const at = Math.min(c, g);
    if (at > 0) {
      const p = m.prefixAt(at);
      const want = this.committedPrefix[at];
      if (p !== undefined && want !== undefined && p !== want) {
        this.fail("State Machine Safety", `node ${node} committed a log that differs from the committed log at ${at} (committed entry lost)`);
      }
    }
    if (c > g) {
      for (let i = g + 1; i <= c; i++) this.committedPrefix[i] = m.prefixAt(i);
      this.commitIndex = c;
      if (voters.length > 0) this.checkDurableQuorum(node, g + 1, c, voters, prevVoters);
      this.checkConfigQuorum(node, m, g + 1, c);
    }
  }

  /**
   * Config Quorum: when index i is first committed, a majority of the voters of the membership in force
   * durably hold it, the membership taken from the committed log (not from the committing node's own
   * view): the configuration after the last conf-change entry committed below i, or the one before it
   * (a leader applies a change, and counts by it, some time after it commits; the core proposes the
   * next change only once that one is applied). A removed node or a learner holding the entry never
   * makes up the majority; a node counting by a configuration two changes old fails here too. Then
   * the conf-change entries among them extend the committed membership.
   */
  private checkConfigQuorum(node: NodeId, m: NodeModel, from: number, to: number): void {
    for (let i = from; i <= to && this.configsKnown; i++) {
      const t = m.termAt(i);
      if (t === undefined) {
        this.configsKnown = false;
        return;
      }
      if (i <= this.bootstrapIndex) continue;
      const last = this.configs[this.configs.length - 1] as CommittedConfig;
      const want = this.committedPrefix[i];
      if (last.voters.length > 0 && want !== undefined) {
        this.configChecks.commits++;
        const prev = this.configs.length > 1 ? (this.configs[this.configs.length - 2] as CommittedConfig) : undefined;
        const ok = (c: CommittedConfig | undefined): boolean => c !== undefined && c.voters.length > 0 && this.holders(i, want, c.voters) > c.voters.length / 2;
        if (!ok(last) && !ok(prev)) {
          const outside = [...this.nodes.keys()].filter((id) => !last.voters.includes(id) && this.holders(i, want, [id]) === 1);
          this.fail(
            "Config Quorum",
            `node ${node} committed ${i} while ${this.holders(i, want, last.voters)} of voters ${last.voters.join(",")} (membership at ${last.index})` +
              (prev && prev.voters.length > 0 ? ` and ${this.holders(i, want, prev.voters)} of ${prev.voters.join(",")} (at ${prev.index})` : "") +
              ` durably held it${outside.length > 0 ? `; non-voters holding it: ${outside.join(",")}` : ""}`,
          );
          this.configsKnown = false; // one report
          return;
        }
      }
      const cc = this.ccByKey.get(key(i, t));
      if (cc) this.configs.push(nextConfig(last, i, cc));
    }
  }

  /**
   * The memberships a node that applied entries up to somewhere in [lo, hi] may have counted by: the
   * committed log's configuration at lo and every one committed in (lo, hi]. Undefined when the
   * committed log is not known that far (its membership cannot be told).
   */
  configsIn(lo: number, hi: number): CommittedConfig[] | undefined {
    if (!this.configsKnown || hi > this.commitIndex) return undefined;
    const out: CommittedConfig[] = [];
    for (let k = this.configs.length - 1; k >= 0; k--) {
      const c = this.configs[k] as CommittedConfig;
      if (c.index > hi) continue;
      out.push(c);
      if (c.index <= lo) break;
    }
    return out;
  }

  /**
   * Vote Quorum: `node` became leader of `term` having applied entries up to `applied` (so counting
   * by the committed log's membership at that index: conf changes take effect as they apply, and a
   * node with a committed change still to apply does not campaign). It must have been granted that
   * term's votes (its own included) by a majority of that membership's voters: a removed node's vote
   * or a learner's never makes up the majority. Returns false when the membership is not known.
   */
  leaderElected(node: NodeId, term: number, applied: number): boolean {
    const [c] = this.configsIn(applied, applied) ?? [];
    if (!c || c.voters.length === 0) return false;
    const votes = new Set(this.votesFor.get(`${term}:${node}`) ?? []);
    votes.add(node); // a candidate votes for itself (Persist Before Send checks that it wrote so first)
    const granted = c.voters.filter((v) => votes.has(v)).length;
    this.configChecks.elections++;
    if (granted > c.voters.length / 2) return true;
    const others = [...votes].filter((v) => !c.voters.includes(v));
    this.fail(
      "Vote Quorum",
      `node ${node} leads term ${term} (applied ${applied}) with the votes of ${[...votes].sort((a, b) => a - b).join(",")}: ${granted} of voters ${c.voters.join(",")} (membership at ${c.index})` +
        (others.length > 0 ? `; votes of non-voters (removed or learners): ${others.join(",")}` : ""),
    );
    return true;
  }

  /** How many of `voters` durably hold the entry at `i` whose prefix hash is `want` (or a snapshot past it). */
  private holders(i: number, want: number, voters: readonly NodeId[]): number {
    let h = 0;
    for (const v of voters) {
      const vm = this.nodes.get(v);
      if (vm && (vm.snapIndex >= i || vm.prefixAt(i) === want)) h++;
    }
    return h;
  }

  /**
   * Durable Quorum: when an index is first durably committed (by its leader, before anyone else can
   * learn it), a majority of the committing node's voters durably hold that entry (or a snapshot past
   * it). The commit may have been computed just before the last membership change took effect (its
   * write was in flight), so a majority of the previous voters also counts, and so does one of the
   * latest two memberships of the committed log.
   */
  private checkDurableQuorum(node: NodeId, from: number, to: number, voters: readonly NodeId[], prev: readonly NodeId[]): void {
    for (let i = from; i <= to; i++) {
      const want = this.committedPrefix[i];
      if (want === undefined) continue;
      const h = this.holders(i, want, voters);
      if (h > voters.length / 2 || (prev.length > 0 && this.holders(i, want, prev) > prev.length / 2)) continue;
      // A follower may report a commit its leader decided (and cannot report yet: its own write is in
      // flight) under a membership the follower has not applied yet: the committed log's latest
      // memberships back it too (seed 2491; Config Quorum checks the leader's count exactly).
      if (this.configs.slice(-2).some((c) => c.voters.length > 0 && this.holders(i, want, c.voters) > c.voters.length / 2)) continue;
      this.fail("Durable Quorum", `node ${node} committed ${i} while ${h} of voters ${voters.join(",")} durably held it`);
      return;
    }
  }

  /**
   * The commit index in memory (reported by the simulator): the rules of commitment are checked on
   * it, up to what the node durably holds. Once such reports arrive, the durable commit no longer
   * drives them (a commit-only hard state is written later, possibly under a newer configuration).
   */
  private onMemCommit(node: NodeId, c: number, held: number, voters: readonly NodeId[]): void {
    this.memCommits = true;
    const m = this.model(node);
    if (c > m.memCommit) m.memCommit = c;
    if (voters.length > 0 && !sameIds(voters, m.cvoters)) {
      m.cprevVoters = m.cvoters;
      m.cvoters = voters;
    }
    // `held`: the part of the log under the commit that is durable and the same in memory.
    if (held > 0) this.onCommit(node, m, Math.min(held, m.lastIndex()), m.cvoters, m.cprevVoters);
  }

  private onApply(node: NodeId, e: EntryDigest, value: string): void {
    const m = this.model(node);
    if (e.index !== m.lastApplied + 1) {
      this.fail("State Machine Safety", `node ${node} applied ${e.index} after ${m.lastApplied}`);
    }
    const commit = this.memCommits ? m.memCommit : m.hardState.commit;
    if (e.index > commit) {
      this.fail("State Machine Safety", `node ${node} applied ${e.index} beyond its ${this.memCommits ? "" : "durable "}commit ${commit}`);
    }
    const seen = this.appliedHash[e.index];
    if (seen === undefined) this.appliedHash[e.index] = e.hash;
    else if (seen !== e.hash) {
      this.fail("State Machine Safety", `node ${node} applied a different entry at ${e.index} than another node`);
    }
    m.lastApplied = e.index;
    if (value !== "" && !this.valueIndex.has(value)) this.valueIndex.set(value, e.index);
  }

  private onSend(node: NodeId, msg: Message): void {
    const m = this.model(node);
    const hs = m.hardState;
    const rule = "Persist Before Send";
    if (msg.type !== "pre-vote" && msg.type !== "pre-vote-resp" && msg.term > hs.term) {
      this.fail(rule, `node ${node} sent ${msg.type} at term ${msg.term} with durable term ${hs.term}`);
    }
    switch (msg.type) {
      // A durable later term also binds: the node can never vote in msg.term again.
      case "vote":
        if (hs.term < msg.term || (hs.term === msg.term && hs.vote !== node)) {
          this.fail(rule, `node ${node} asked for votes before persisting its own vote`);
        }
        return;
      case "vote-resp":
        if (!msg.reject) {
          const k = `${msg.term}:${msg.to}`;
          const set = this.votesFor.get(k) ?? new Set<NodeId>();
          set.add(node);
          this.votesFor.set(k, set);
          const granted = m.grantedVotes.get(msg.term);
          if (granted !== undefined && granted !== msg.to) this.fail("Vote Once", `node ${node} granted its term-${msg.term} vote to ${granted}, then to ${msg.to}`);
          m.grantedVotes.set(msg.term, msg.to);
        }
        if (!msg.reject && (hs.term < msg.term || (hs.term === msg.term && hs.vote !== msg.to))) {
          this.fail(rule, `node ${node} granted a vote to ${msg.to} in term ${msg.term} before persisting it`);
        }
        return;
      case "append": {
        const last = msg.entries[msg.entries.length - 1];
        // A leader may send entries of its own term before they are durable on its disk once that
        // term and its vote are (Raft thesis 10.2.1: it counts itself only after its write); any
        // other entry must be durable first.
        const ownTerm = last !== undefined && last.term === msg.term && hs.term === msg.term && hs.vote === node;
        if (last && !ownTerm && m.termAt(last.index) !== last.term && last.index > m.snapIndex) {
          this.fail(rule, `leader ${node} sent entry ${last.index} before persisting it`);
        }
        return;
      }
      case "append-resp": {
        if (msg.reject || msg.index === 0) return;
        if (msg.index > m.lastIndex()) {
          this.fail(rule, `node ${node} acknowledged index ${msg.index} with durable last index ${m.lastIndex()}`);
          return;
        }
        // The ack claims our durable log matches the term's leader up to index. (Only while that node
        // still leads in that term: once deposed, its log may be rewritten by a newer leader.)
        const leader = this.leaders.get(msg.term);
        const lm = leader === undefined ? undefined : this.model(leader);
        const mine = m.prefixAt(msg.index);
        const theirs = lm && lm.leaderTerm === msg.term ? lm.prefixAt(msg.index) : undefined;
        if (mine !== undefined && theirs !== undefined && mine !== theirs) {
          this.fail(rule, `node ${node} acknowledged index ${msg.index} to the leader of term ${msg.term} but holds different entries`);
        }
        return;
      }
      case "pre-vote":
      case "pre-vote-resp":
      case "heartbeat":
      case "heartbeat-resp":
      case "snapshot":
      case "timeout-now":
        return;
    }
  }
}
