// Mutation testing of the Raft core, runtime and Raft storage: each entry of the catalogue is a realistic
// Raft bug, written as exact source patches. Each is applied, one at a time, to a temporary copy of the
// repository (never the working tree), and the detectors run there: `bun test tests/raft tests/sim` at
// CI's seed count (a storage mutation names its own: the storage tests that cut power). A mutation is
// caught when that run fails (the failing tests and the simulator's violated rules say by what), or
// when it hangs past the per-mutation time limit (the process group is killed).
//
//   bun scripts/mutate.ts                 # the whole catalogue, one mutation at a time
//   bun scripts/mutate.ts --list          # ids and descriptions
//   bun scripts/mutate.ts --only a,b      # some of them
//   bun scripts/mutate.ts --jobs 2        # mutations run in parallel (default 1)
//   bun scripts/mutate.ts --limit 600     # seconds per mutation before it counts as a hang (default 600)
//   bun scripts/mutate.ts --check         # only verify that every patch applies (no test run)
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

interface Patch {
  /** A file under src/raft, src/node or src/storage. */
  readonly file: string;
  /** Must occur exactly once in the file. */
  readonly find: string;
  readonly replace: string;
}

interface Mutation {
  readonly id: string;
  readonly description: string;
  /** Usually one; a bug that needs two coordinated edits (e.g., moving a step) has two. */
  readonly patches: readonly Patch[];
  /**
   * Why it may survive: "equivalent" (cannot change behaviour in this code) or "gap" (a real bug the
   * detectors miss at CI's seed count: what would catch it). A survivor without a note fails the run.
   */
  readonly survives?: { readonly kind: "equivalent" | "gap"; readonly why: string };
  /** Test paths that should catch it (default: DETECTORS). */
  readonly detectors?: readonly string[];
}

/** What CI runs that can catch a bug in src/raft or src/node. */
const DETECTORS = ["tests/raft", "tests/sim"];

const RAFT = "src/raft/raft.ts";
const LOG = "src/raft/log.ts";
const STORAGE = "src/raft/storage.ts";
const NODE = "src/node/raft-node.ts";
const RAFT_LOG = "src/storage/raft-log.ts";
const WAL = "src/storage/wal.ts";

export const CATALOGUE: readonly Mutation[] = [
  {
    id: "figure8-commit",
    description: "leader commits an older-term entry by counting replicas (Figure 8)",
    patches: [{ file: LOG, find: "if (maxIndex > this.committed && this.term(maxIndex) === term) {", replace: "if (maxIndex > this.committed && term > 0) {" }],
  },
  {
    id: "restart-forgets-vote",
    description: "a restart forgets votedFor (the durable vote is not loaded)",
    patches: [{ file: RAFT, find: "    this.term = hs.term;\n    this.vote = hs.vote;", replace: "    this.term = hs.term;\n    this.vote = NONE;" }],
  },
  {
    id: "stableto-ignores-term",
    description: "stableTo marks index i stable without checking its term (a rewritten entry counts as durable)",
    patches: [{ file: LOG, find: "if (gt === t && i >= this.offset) {", replace: "if (gt !== undefined && i >= this.offset) {" }],
  },
  {
    id: "two-conf-changes",
    description: "a leader accepts a second conf change while the first is unapplied",
    patches: [
      {
        file: RAFT,
        find: "    const index = this.appendEntries([{ type: \"conf-change\", data }]);\n    this.pendingConfIndex = index;",
        replace: "    const index = this.appendEntries([{ type: \"conf-change\", data }]);",
      },
    ],
  },
  {
    id: "leader-stale-append-resp",
    description: "a leader accepts an append-resp from an older term",
    patches: [
      {
        file: RAFT,
        find: "    } else if (m.term < this.term) {\n",
        replace: "    } else if (m.term < this.term && m.type === \"append-resp\" && this.role === \"leader\") {\n      this.handleAppendResp(m);\n      return;\n    } else if (m.term < this.term) {\n",
      },
    ],
  },
  {
    id: "candidate-stale-vote",
    description: "a candidate accepts a vote granted in an older term",
    patches: [
      {
        file: RAFT,
        find: "    } else if (m.term < this.term) {\n",
        replace: "    } else if (m.term < this.term && m.type === \"vote-resp\" && this.role === \"candidate\") {\n      this.handleVoteResp(m);\n      return;\n    } else if (m.term < this.term) {\n",
      },
    ],
  },
  {
    id: "snapshot-keeps-suffix",
    description: "storage keeps the log suffix past an installed snapshot (whatever its terms)",
    patches: [
      {
        file: STORAGE,
        find: "    this.snap = s;\n    this.ents = [];",
        replace: "    const keep = this.ents.filter((e) => e.index > s.meta.index);\n    this.snap = s;\n    this.ents = keep;",
      },
    ],
  },
  {
    id: "follower-commit-lastindex",
    description: "a follower commits min(leaderCommit, lastIndex) instead of min(leaderCommit, last new entry)",
    patches: [{ file: LOG, find: "this.commitTo(Math.min(committed, lastNew));", replace: "this.commitTo(Math.min(committed, this.lastIndex()));" }],
  },
  {
    id: "leader-counts-unpersisted",
    description: "a leader counts its own unpersisted entries toward commit",
    patches: [{ file: RAFT, find: "  private selfMatch(): number {\n    return this.log.lastStableIndex();", replace: "  private selfMatch(): number {\n    return this.log.lastIndex();" }],
  },
  {
    id: "prevote-bumps-term",
    description: "pre-vote bumps the real term (a pre-candidate moves to term+1 before winning)",
    patches: [
      {
        file: RAFT,
        find: "      this.becomePreCandidate();\n      type = \"pre-vote\";\n      term = this.term + 1;",
        replace: "      this.reset(this.term + 1);\n      this.becomePreCandidate();\n      type = \"pre-vote\";\n      term = this.term;",
      },
    ],
  },
  {
    id: "check-quorum-off",
    description: "check-quorum (and with it the followers' leader lease) off by default",
    patches: [{ file: RAFT, find: "this.checkQuorum = c.checkQuorum ?? true;", replace: "this.checkQuorum = c.checkQuorum ?? false;" }],
  },
  {
    id: "readindex-before-noop",
    description: "ReadIndex served before the term's no-op commits (the recorded commit index may be stale)",
    patches: [{ file: RAFT, find: "    if (!this.committedEntryInCurrentTerm()) {\n      // Until the no-op", replace: "    if (this.role !== \"leader\") {\n      // Until the no-op" }],
  },
  {
    id: "readindex-no-quorum",
    description: "ReadIndex released on the leader's own ack alone (no heartbeat quorum)",
    patches: [{ file: RAFT, find: "    if (this.voters.size === 1 && this.voters.has(this.id)) {\n      this.readStates.push", replace: "    if (this.voters.has(this.id)) {\n      this.readStates.push" }],
  },
  {
    id: "heartbeat-commit-past-match",
    description: "heartbeats carry the leader's commit, not min(commit, follower match)",
    patches: [{ file: RAFT, find: "const commit = Math.min(pr.match, this.log.committed);", replace: "const commit = this.log.committed;" }],
  },
  {
    id: "election-not-randomized",
    description: "election timeout not randomized (always electionTicks)",
    patches: [{ file: RAFT, find: "this.randomizedElectionTimeout = this.electionTicks + this.rand.int(this.electionTicks);", replace: "this.randomizedElectionTimeout = this.electionTicks + 0 * this.rand.int(this.electionTicks);" }],
  },
  {
    id: "vote-ignores-log",
    description: "voters grant votes without the up-to-date log check (§5.4.1)",
    patches: [{ file: RAFT, find: "if (canVote && this.log.isUpToDate(m.lastIndex, m.lastTerm)) {", replace: "if (canVote) {" }],
  },
  {
    id: "vote-twice-per-term",
    description: "a node grants a vote to any candidate of its current term (votes more than once per term)",
    patches: [{ file: RAFT, find: "      this.vote === m.from ||\n      (this.vote === NONE && this.lead === NONE) ||", replace: "      this.vote === m.from ||\n      this.lead === NONE ||" }],
  },
  {
    id: "no-noop-on-election",
    description: "a new leader appends no no-op entry at the start of its term",
    patches: [{ file: RAFT, find: "    const noop = this.appendEntries([{ type: \"normal\", data: EMPTY }]);", replace: "    const noop = this.log.lastIndex();\n    this.bcastPending = true;" }],
  },
  {
    id: "keep-stale-msgs-on-term-change",
    description: "messages queued in an older term are still sent after a term change",
    patches: [{ file: RAFT, find: "      this.msgs = this.msgs.filter((m) => m.term >= term);", replace: "" }],
  },
  {
    id: "snapshot-restore-no-commit",
    description: "installing a snapshot does not advance the commit index to the snapshot's index",
    patches: [{ file: LOG, find: "    this.committed = s.meta.index;\n    this.unstable.restore(s);", replace: "    this.unstable.restore(s);" }],
  },
  {
    id: "runtime-apply-before-persist",
    description: "the runtime applies a Ready's committed entries before its persist is durable",
    patches: [
      {
        file: NODE,
        find: "          this.persisting = rd;\n",
        replace: "          for (const e of rd.committedEntries) this.applyEntry(e);\n          this.persisting = rd;\n",
      },
      {
        file: NODE,
        find: "  private applyEntry(e: Entry): void {\n",
        replace: "  private applyEntry(e: Entry): void {\n    if (e.index <= this.applied) return;\n",
      },
    ],
    survives: {
      kind: "equivalent",
      why:
        "the Raft log hands out committed entries only up to the node's last durable index (RaftLog.applicableTo), so a Ready's " +
        "committed entries are never among the entries its persist writes, and its snapshot comes with no committed entries: " +
        "applying them before that persist applies only entries already durable here; the bound itself is caught (apply-before-durable-locally)",
    },
  },
  {
    id: "runtime-send-before-persist",
    description: "the runtime sends a Ready's messages before its persist is durable",
    patches: [
      {
        file: NODE,
        find: "          this.persisting = rd;\n",
        replace: "          if (rd.messages.length > 0) this.transport.send((rd.messages as Message[]).splice(0));\n          this.persisting = rd;\n",
      },
    ],
  },
  {
    id: "runtime-proposal-by-index",
    description: "the runtime takes the entry applied at a proposal's index as that proposal, whatever the entry's term",
    patches: [{ file: NODE, find: "    const mine = p !== undefined && p.term === e.term;", replace: "    const mine = p !== undefined && p.term > 0;" }],
    survives: {
      kind: "equivalent",
      why:
        "a deposed leader fails its pending proposals in the same finish() that sends its first message of the new term, and no leader " +
        "can commit an entry overwriting ours before hearing that message (its first append carries a commit below its no-op; " +
        "Log Matching forbids accepting an append that skips our divergent entry); argued, not proved: the term check stays, and " +
        "the simulator's check that an entry applies with its own proposal's context (and Acknowledged Write Applied) would catch a violation",
    },
  },
  {
    id: "pipelined-append-counted-early",
    description: "a leader counts its pipelined append toward a quorum as soon as it is issued, before it is durable",
    patches: [
      {
        file: NODE,
        find: "            this.finish(rd, false);\n",
        replace: "            this.finish(rd, false);\n            this.rawNode.persisted(last.index, last.term);\n",
      },
    ],
  },
  {
    id: "apply-before-durable-locally",
    description: "a leader applies entries its followers made committed before its own write of them is durable",
    patches: [{ file: LOG, find: "    return Math.min(this.committed, this.lastStableIndex());", replace: "    return this.committed;" }],
  },
  {
    id: "prevote-off",
    description: "pre-vote off by default (a node that times out campaigns at once with term+1)",
    patches: [{ file: RAFT, find: "this.preVote = c.preVote ?? true;", replace: "this.preVote = c.preVote ?? false;" }],
  },
  {
    id: "lease-ignores-only-votes",
    description: "the leader lease (check-quorum) ignores real vote requests but answers pre-votes",
    patches: [{ file: RAFT, find: 'if (m.type === "vote" || m.type === "pre-vote") {', replace: 'if (m.type === "vote") {' }],
  },
  {
    id: "follower-accepts-stale-append",
    description: "a node handles an append from an older term (a deposed leader's late message) instead of refusing it",
    patches: [
      {
        file: RAFT,
        find: "    } else if (m.term < this.term) {\n",
        replace: '    } else if (m.term < this.term && m.type === "append" && this.role === "follower") {\n      this.handleAppend(m);\n      return;\n    } else if (m.term < this.term) {\n',
      },
    ],
  },
  {
    id: "restart-commit-ignores-snapshot",
    description: "on restart the commit index comes from the hard state alone, not at least the durable snapshot's index",
    patches: [{ file: RAFT, find: "const commit = Math.max(hs.commit, this.log.committed);", replace: "const commit = hs.commit;" }],
  },
  {
    id: "runtime-vote-before-persist",
    description: "the runtime sends vote responses as soon as a Ready is taken, before its persist (the rest waits)",
    patches: [
      {
        file: NODE,
        find: "          this.persisting = rd;\n",
        replace:
          '          const votes = rd.messages.filter((m) => m.type === "vote-resp");\n' +
          "          if (votes.length > 0) {\n" +
          "            this.transport.send(votes);\n" +
          '            const rest = rd.messages.filter((m) => m.type !== "vote-resp");\n' +
          "            (rd.messages as Message[]).splice(0, rd.messages.length, ...rest);\n" +
          "          }\n" +
          "          this.persisting = rd;\n",
      },
    ],
  },
  {
    id: "runtime-ack-before-fsync",
    description: "the runtime finishes a Ready (sends, applies, advances) once its persist is issued, not once it is durable",
    patches: [
      {
        file: NODE,
        find:
          "          this.persisting = rd;\n" +
          "          this.persistDone = this.storage.persist({ hardState, entries: rd.entries, snapshot: rd.snapshot }).then(\n" +
          "            () => this.afterPersist(rd, hardState),\n" +
          "            (err: unknown) => this.fail(err),\n" +
          "          );\n" +
          "          return;\n",
        replace:
          "          const issued = this.persistDone.then(() => this.storage.persist({ hardState, entries: rd.entries, snapshot: rd.snapshot }));\n" +
          "          this.persistDone = issued.catch((err: unknown) => this.fail(err));\n" +
          "          if (hardState !== undefined) {\n" +
          "            this.writtenTerm = hardState.term;\n" +
          "            this.writtenVote = hardState.vote;\n" +
          "          }\n",
      },
    ],
  },
  {
    id: "raftlog-ack-before-fsync",
    description: "RaftLog.persist resolves once the Ready's records are queued, before their fdatasync",
    patches: [{ file: RAFT_LOG, find: "      });\n    }\n    return { durable: this.lastDurable };", replace: "      });\n    }\n    return { durable: Promise.resolve() };" }],
    detectors: ["tests/storage/raft-log.test.ts"],
  },
  {
    id: "wal-ack-before-fsync",
    description: "the WAL acknowledges a batch after write(2), before its fdatasync returns (--fsync always)",
    patches: [
      {
        file: WAL,
        find: '      if (this.mode !== "always") {\n        this.ackBatch(batch);\n        continue;\n      }',
        replace: '      this.ackBatch(batch);\n      if (this.mode !== "always") continue;',
      },
    ],
    detectors: ["tests/storage/raft-log.test.ts"],
  },
];

// ---- running ----

const ROOT = join(import.meta.dir, "..");
const COPY = ["src", "tests", "package.json", "tsconfig.json", "bunfig.toml"];

function countOccurrences(hay: string, needle: string): number {
  let n = 0;
  for (let at = hay.indexOf(needle); at >= 0; at = hay.indexOf(needle, at + 1)) n++;
  return n;
}

/** Applies a mutation's patches to the files under `dir`; throws if a find string is not there exactly once. */
function applyMutation(dir: string, m: Mutation): void {
  for (const p of m.patches) {
    if (!/^src\/(raft|node|storage)\//.test(p.file)) throw new Error(`${m.id}: ${p.file} is not under src/raft, src/node or src/storage`);
    const path = join(dir, p.file);
    const text = readFileSync(path, "utf8");
    const n = countOccurrences(text, p.find);
    if (n !== 1) throw new Error(`${m.id}: find string occurs ${n} times in ${p.file} (must be exactly once):\n${p.find}`);
    const out = text.replace(p.find, () => p.replace);
    if (out === text) throw new Error(`${m.id}: patch to ${p.file} changes nothing`);
    writeFileSync(path, out);
  }
}

function makeCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), "kv-mutate-"));
  for (const name of COPY) cpSync(join(ROOT, name), join(dir, name), { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
  return dir;
}

interface Outcome {
  readonly id: string;
  readonly description: string;
  readonly verdict: "caught" | "hang" | "survived" | "equivalent" | "gap" | "error";
  readonly caughtBy: string;
  readonly seconds: number;
}

/** CI's environment for the detectors: the default seed count, no single-seed replay. */
function detectorEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== "SIM_SEEDS" && k !== "SEED") env[k] = v;
  return env;
}

/** Failing tests (with their test file) and the simulator rules named in a `bun test` output. */
function summarize(output: string): { tests: Map<string, string>; rules: string[] } {
  const tests = new Map<string, string>();
  const rules = new Set<string>();
  let file = "?";
  for (const line of output.split("\n")) {
    const header = /^(tests\/\S+\.test\.ts):$/.exec(line.trim());
    if (header) file = (header[1] as string).replace(/^tests\//, "");
    const fail = /^\(fail\) (.*?)(?: \[[\d.]+m?s\])?$/.exec(line.trim());
    if (fail && !tests.has(fail[1] as string)) tests.set(fail[1] as string, file);
    const rule = /^[-+ "]*\[([A-Z][A-Za-z ]+)\] at step/.exec(line.trim());
    if (rule) rules.add(rule[1] as string);
  }
  return { tests, rules: [...rules] };
}

async function runOne(m: Mutation, limitSec: number): Promise<Outcome> {
  const dir = makeCopy();
  const started = performance.now();
  try {
    applyMutation(dir, m);
    const child = spawn(process.execPath, ["test", "--timeout", "60000", ...(m.detectors ?? DETECTORS)], {
      cwd: dir,
      detached: true,
      env: detectorEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr.on("data", (b: Buffer) => (output += b.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-(child.pid as number), "SIGKILL");
      } catch {
        /* already gone */
      }
    }, limitSec * 1000);
    const code: number | null = await new Promise((resolve) => child.on("close", (c) => resolve(c)));
    clearTimeout(timer);
    const seconds = (performance.now() - started) / 1000;
    writeFileSync(join(tmpdir(), `kv-mutate-${m.id}.log`), output);
    const { tests, rules } = summarize(output);
    if (timedOut) {
      const seen = tests.size > 0 ? `; failed before the kill: ${[...new Set(tests.values())].join(", ")}` : "";
      return { id: m.id, description: m.description, verdict: "hang", caughtBy: `time limit (${limitSec} s, process group killed)${seen}`, seconds };
    }
    if (code === 0) {
      if (m.survives) return { id: m.id, description: m.description, verdict: m.survives.kind, caughtBy: m.survives.why, seconds };
      return { id: m.id, description: m.description, verdict: "survived", caughtBy: "-", seconds };
    }
    const files = [...new Set(tests.values())];
    const by = tests.size === 0 ? `exit ${code} (no failing test named)` : `${files.join(", ")} (${tests.size} failing)`;
    const why = rules.length > 0 ? `; rules: ${rules.join(", ")}` : "";
    return { id: m.id, description: m.description, verdict: "caught", caughtBy: by + why, seconds };
  } catch (err) {
    const seconds = (performance.now() - started) / 1000;
    return { id: m.id, description: m.description, verdict: "error", caughtBy: String(err instanceof Error ? err.message : err), seconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function parseArgs(argv: string[]): { only?: string[]; list: boolean; check: boolean; jobs: number; limit: number } {
  const out = { only: undefined as string[] | undefined, list: false, check: false, jobs: 1, limit: 600 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--list") out.list = true;
    else if (a === "--check") out.check = true;
    else if (a === "--only") out.only = (argv[++i] ?? "").split(",").filter((s) => s !== "");
    else if (a === "--jobs") out.jobs = Math.max(1, Number(argv[++i]));
    else if (a === "--limit") out.limit = Math.max(1, Number(argv[++i]));
    else throw new Error(`unknown argument ${a} (use --list, --check, --only id,id, --jobs n, --limit seconds)`);
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const ids = new Set(CATALOGUE.map((m) => m.id));
  if (ids.size !== CATALOGUE.length) throw new Error("duplicate mutation id");
  for (const id of args.only ?? []) if (!ids.has(id)) throw new Error(`unknown mutation ${id} (see --list)`);
  const chosen = CATALOGUE.filter((m) => args.only === undefined || args.only.includes(m.id));
  if (args.list) {
    for (const m of chosen) console.log(`${m.id.padEnd(32)} ${m.description}`);
    return;
  }
  if (args.check) {
    for (const m of chosen) {
      const dir = makeCopy();
      try {
        applyMutation(dir, m);
        console.log(`ok ${m.id}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return;
  }
  console.log(`${chosen.length} mutations, ${args.jobs} at a time, ${args.limit} s each at most; logs in ${tmpdir()}/kv-mutate-<id>.log`);
  const results: Outcome[] = new Array(chosen.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < chosen.length) {
      const i = next++;
      const r = await runOne(chosen[i] as Mutation, args.limit);
      results[i] = r;
      console.log(`${r.verdict.padEnd(8)} ${r.id} (${r.seconds.toFixed(0)} s): ${r.caughtBy}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(args.jobs, chosen.length) }, worker));
  console.log("\n| id | description | caught by | time |\n|---|---|---|---|");
  for (const r of results) {
    const by = r.verdict === "caught" ? r.caughtBy : `**${r.verdict.toUpperCase()}** ${r.caughtBy}`;
    console.log(`| \`${r.id}\` | ${r.description} | ${by} | ${r.seconds.toFixed(0)} s |`);
  }
  const missed = results.filter((r) => r.verdict === "survived" || r.verdict === "error");
  const caught = results.filter((r) => r.verdict === "caught" || r.verdict === "hang").length;
  const noted = results.length - caught - missed.length;
  console.log(`\n${caught} of ${results.length} caught (hangs count as caught), ${noted} documented survivors, ${missed.length} unexplained`);
  if (missed.length > 0) process.exitCode = 1;
}

if (import.meta.main) await main();
