// Data-driven transcripts (as etcd-io/raft's testdata): tests/raft/testdata/*.txt hold commands and the
// exact messages and state transitions each produces. REWRITE=1 regenerates the expected output.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MemoryStorage } from "../../src/raft/storage.ts";
import type { ConfChangeType, Message } from "../../src/raft/types.ts";
import { Cluster, dec, enc, fmt } from "./harness.ts";

const DIR = join(import.meta.dir, "testdata");

interface Block {
  cmd: string;
  expected: string;
}

function parse(text: string): Block[] {
  const blocks: Block[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.trim() === "" || line.startsWith("#")) continue;
    const cmd = line;
    if (lines[i + 1] !== "----") throw new Error(`line ${i + 2}: expected ----`);
    i += 2;
    const out: string[] = [];
    while (i < lines.length && (lines[i] as string).trim() !== "") out.push(lines[i++] as string);
    blocks.push({ cmd, expected: out.join("\n") });
  }
  return blocks;
}

class Interpreter {
  c: Cluster | undefined;
  private last = new Map<number, string>();

  private cluster(): Cluster {
    if (!this.c) throw new Error("no cluster: start with `cluster <ids...>`");
    return this.c;
  }

  /** Lines for nodes whose role, term, leader or commit changed since the last command. */
  private changes(): string[] {
    const out: string[] = [];
    for (const n of this.cluster().nodes.values()) {
      const s = n.rn.status();
      const line = `${s.role} term=${s.term} lead=${s.lead} commit=${s.commit}`;
      if (this.last.get(n.id) !== line) out.push(`  ${n.id}: ${line}`);
      this.last.set(n.id, line);
    }
    return out;
  }

  private deliverAll(limit: number): string[] {
    const c = this.cluster();
    const out: string[] = [];
    for (let round = 0; round < limit; round++) {
      const msgs: Message[] = c.take();
      if (msgs.length === 0) break;
      for (const m of msgs) {
        const dropped = c.cut.has(`${m.from}->${m.to}`);
        out.push(`${dropped ? "dropped " : ""}${fmt(m)}`);
      }
      c.deliver(msgs);
      out.push(...this.changes());
    }
    return out;
  }

  run(cmd: string): string {
    const [op, ...args] = cmd.trim().split(/\s+/);
    const num = (i: number): number => {
      const v = Number(args[i]);
      if (!Number.isInteger(v)) throw new Error(`${cmd}: argument ${i + 1} must be an integer`);
      return v;
    };
    const out: string[] = [];
    switch (op) {
      case "cluster": {
        const learners = args.filter((a) => a.startsWith("l")).map((a) => Number(a.slice(1)));
        const voters = args.filter((a) => !a.startsWith("l")).map(Number);
        this.c = new Cluster([...voters, ...learners], { voters, learners });
        out.push(...this.changes());
        break;
      }
      case "campaign":
        this.cluster().node(num(0)).rn.campaign();
        out.push(...this.changes(), ...this.deliverAll(1));
        break;
      case "tick":
        this.cluster().tick(num(0), args[1] ? num(1) : 1);
        out.push(...this.changes());
        break;
      case "propose": {
        const r = this.cluster().node(num(0)).rn.propose(enc(args[1] ?? ""));
        out.push(r.ok ? `ok index=${r.index} term=${r.term}` : `refused: ${r.reason}`);
        break;
      }
      case "read-index":
        out.push(this.cluster().node(num(0)).rn.readIndex(args[1] ?? ""));
        break;
      case "transfer":
        out.push(this.cluster().node(num(0)).rn.transferLeadership(num(1)));
        break;
      case "conf": {
        const r = this.cluster().node(num(0)).rn.proposeMembershipChange({ type: args[1] as ConfChangeType, node: num(2) });
        out.push(r.ok ? `ok index=${r.index} term=${r.term}` : `refused: ${r.reason}`);
        break;
      }
      case "add-node":
        this.cluster().add(num(0), new MemoryStorage());
        out.push(...this.changes());
        break;
      case "compact": {
        const n = this.cluster().node(num(0));
        const s = n.storage.createSnapshot(n.rn.raft.log.applied, n.rn.raft.confState(), enc(`snap@${n.rn.raft.log.applied}`));
        out.push(`snapshot ${s.meta.index}/${s.meta.term} first=${n.storage.firstIndex()}`);
        break;
      }
      case "deliver":
        out.push(...this.deliverAll(1));
        break;
      case "stabilize":
        out.push(...this.deliverAll(1000));
        break;
      case "isolate":
        this.cluster().isolate(num(0));
        break;
      case "cut":
        this.cluster().cut.add(`${num(0)}->${num(1)}`);
        break;
      case "heal":
        this.cluster().heal();
        break;
      case "reads": {
        const n = this.cluster().node(num(0));
        out.push(...n.readStates.map((r) => `${r.requestCtx}@${r.index}`));
        n.readStates = [];
        break;
      }
      case "applied": {
        const snap = this.cluster().node(num(0)).storage.snapshot();
        const prefix = snap.data.length > 0 ? `[${dec(snap.data)}] ` : "";
        out.push(prefix + this.cluster().appliedData(num(0)).join(" "));
        break;
      }
      case "conf-state": {
        const cs = this.cluster().raft(num(0)).confState();
        out.push(`voters=${cs.voters.join(",")} learners=${cs.learners.join(",")}`);
        break;
      }
      default:
        throw new Error(`unknown command ${cmd}`);
    }
    return out.join("\n");
  }
}

describe("scenario transcripts", () => {
  for (const file of readdirSync(DIR).filter((f) => f.endsWith(".txt")).sort()) {
    test(file, () => {
      const path = join(DIR, file);
      const blocks = parse(readFileSync(path, "utf8"));
      const it = new Interpreter();
      if (process.env.REWRITE) {
        const text = blocks.map((b) => `${b.cmd}\n----\n${it.run(b.cmd)}`.trimEnd()).join("\n\n");
        const header = readFileSync(path, "utf8").split("\n").filter((l) => l.startsWith("#")).join("\n");
        writeFileSync(path, `${header}\n\n${text}\n`);
        return;
      }
      for (const b of blocks) expect(`${b.cmd}\n${it.run(b.cmd)}`.trimEnd()).toBe(`${b.cmd}\n${b.expected}`.trimEnd());
    });
  }
});
