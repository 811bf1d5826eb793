// Paper rules for log replication and commitment (Raft §5.3, §5.4.2 / Figure 8), flow control, one test per rule.
import { describe, expect, test } from "bun:test";
import type { Entry, Message } from "../../src/raft/types.ts";
import { Cluster, enc, fmt } from "./harness.ts";

const ent = (index: number, term: number): Entry => ({ index, term, type: "normal", data: enc(`${index}/${term}`) });
const app = (to: number, term: number, logIndex: number, logTerm: number, entries: Entry[], commit: number): Message => ({
  type: "append",
  from: 1,
  to,
  term,
  logIndex,
  logTerm,
  entries,
  commit,
});

describe("log replication", () => {
  test("AppendEntries: reject if the log has no entry at prevLogIndex with prevLogTerm", () => {
    const c = new Cluster([1, 2, 3]);
    c.deliver([app(2, 2, 5, 2, [ent(6, 2)], 3)]); // we only have 1..3
    expect(c.take().map(fmt)).toEqual(["2->1 append-resp t2 reject index=5 hint=3/1"]);
    c.deliver([app(2, 2, 3, 2, [ent(4, 2)], 3)]); // index 3 exists but has term 1
    expect(c.take().map(fmt)).toEqual(["2->1 append-resp t2 reject index=3 hint=3/1"]);
    expect(c.raft(2).log.lastIndex()).toBe(3);
  });

  test("AppendEntries: a conflicting entry and everything after it are deleted, then new entries appended", () => {
    const c = new Cluster([1, 2, 3], { logs: { 2: { terms: [2, 2, 2], term: 2 } } });
    c.deliver([app(2, 3, 4, 2, [ent(5, 3)], 3)]);
    expect(c.take().map(fmt)).toEqual(["2->1 append-resp t3 index=5"]);
    const log = c.raft(2).log;
    expect(log.lastIndex()).toBe(5);
    expect(log.term(5)).toBe(3);
    expect(c.node(2).storage.allEntries().map((e) => `${e.index}/${e.term}`)).toEqual(["1/1", "2/1", "3/1", "4/2", "5/3"]);
  });

  test("AppendEntries: entries already present are not rewritten (a duplicate or reordered append is harmless)", () => {
    const c = new Cluster([1, 2, 3]);
    c.deliver([app(2, 2, 3, 1, [ent(4, 2), ent(5, 2), ent(6, 2)], 3)]);
    c.take();
    c.deliver([app(2, 2, 3, 1, [ent(4, 2)], 3)]); // late, shorter duplicate
    expect(c.take().map(fmt)).toEqual(["2->1 append-resp t2 index=4"]);
    expect(c.raft(2).log.lastIndex()).toBe(6); // not truncated to 4
  });

  test("AppendEntries: commitIndex = min(leaderCommit, index of last new entry)", () => {
    const c = new Cluster([1, 2, 3]);
    c.deliver([app(2, 2, 3, 1, [ent(4, 2), ent(5, 2)], 9)]);
    c.take();
    expect(c.raft(2).log.committed).toBe(5);
    c.deliver([app(2, 2, 3, 1, [ent(4, 2)], 9)]); // a stale message only vouches for up to 4
    c.take();
    expect(c.raft(2).log.committed).toBe(5); // and commit never decreases
  });

  test("AppendEntries: a stale suffix past the last new entry is not committed, even if leaderCommit covers it", () => {
    // Follower 2 holds 4/2 and a stale 5/3, 6/3 from a deposed term-3 leader. The term-4 leader's
    // append vouches only for what it sends (4/2): 5 and 6 may still be overwritten.
    const c = new Cluster([1, 2, 3], { logs: { 2: { terms: [2, 3, 3], term: 3 } } });
    c.deliver([app(2, 4, 3, 1, [ent(4, 2)], 6)]);
    expect(c.take().map(fmt)).toEqual(["2->1 append-resp t4 index=4"]);
    expect(c.raft(2).log.lastIndex()).toBe(6);
    expect(c.raft(2).log.committed).toBe(4);
  });

  test("a committed entry is never overwritten (asserted)", () => {
    const c = new Cluster([1, 2, 3]);
    c.deliver([app(2, 2, 3, 1, [ent(4, 2)], 4)]);
    c.take();
    expect(() => c.deliver([app(2, 3, 3, 1, [ent(4, 3)], 4)])).not.toThrow(); // logIndex < commit: ignored, answered with commit
    expect(c.take().map(fmt)).toEqual(["2->1 append-resp t3 index=4"]);
    expect(c.raft(2).log.term(4)).toBe(2);
  });

  test("Leader Append-Only: a leader never deletes or overwrites its own entries", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.isolate(1);
    for (const v of ["a", "b"]) c.node(1).rn.propose(enc(v));
    c.take();
    const before = c.node(1).storage.allEntries().map((e) => `${e.index}/${e.term}`);
    // A rejection claiming a conflict makes the leader back up its view of the follower, not its own log.
    c.deliver([{ type: "append-resp", from: 2, to: 1, term: 2, index: 6, reject: true, rejectHint: 3, hintTerm: 1 }]);
    c.take();
    expect(c.node(1).storage.allEntries().map((e) => `${e.index}/${e.term}`)).toEqual(before);
    // And a same-term append from "another leader" is a broken invariant: crash.
    expect(() => c.node(1).rn.step({ type: "append", from: 2, to: 1, term: 2, logIndex: 0, logTerm: 0, entries: [], commit: 0 })).toThrow(
      /two leaders/,
    );
  });

  test("Commitment: a leader commits an entry once a majority durably stores it", () => {
    const c = new Cluster([1, 2, 3, 4, 5]);
    c.elect(1);
    c.cut.add("1->3").add("1->4").add("1->5");
    c.node(1).rn.propose(enc("x"));
    c.stabilize();
    expect(c.raft(1).log.committed).toBe(6); // 1..5 bootstrap, 6 no-op, 7 "x": only 2 of 5 have 7
    c.cut.delete("1->3");
    c.tick(1);
    c.stabilize();
    expect(c.raft(1).log.committed).toBe(7);
  });

  test("Commitment (Figure 8): entries of earlier terms are never committed by counting replicas", () => {
    // Bootstrap 1..3 (term 1). Node 1 holds 4/2 (written as leader of term 2) and is elected in term 4;
    // node 3 holds 4/3 from a leader of term 3.
    const c = new Cluster([1, 2, 3], {
      logs: { 1: { terms: [2], term: 3 }, 2: { terms: [], term: 3 }, 3: { terms: [3], term: 3 } },
      config: { msgBytesMax: 1 }, // one entry per message, so 4/2 can arrive without 5/4
    });
    c.cut.add("1->3").add("3->1");
    c.node(1).rn.campaign();
    // Once node 2 holds 4/2, every append carrying a term-4 entry is lost.
    const lost = (m: Message) => m.type === "append" && c.raft(2).log.lastIndex() >= 4 && m.entries.some((e) => e.term === 4);
    for (let i = 0; i < 10; i++) c.deliver(c.take().filter((m) => !lost(m)));
    // 4/2 now sits on a majority (1 and 2), but the term-4 no-op (5/4) never arrived: nothing commits.
    expect(c.raft(1).role).toBe("leader");
    expect(c.raft(1).term).toBe(4);
    expect(c.raft(2).log.term(4)).toBe(2);
    expect(c.raft(1).log.committed).toBe(3);
    expect(c.raft(2).log.committed).toBe(3);
    // Once the no-op of term 4 reaches a majority, 4/2 commits with it.
    c.tick(1);
    c.stabilize();
    expect(c.raft(1).log.committed).toBe(5);
  });

  test("Leader: the leader counts itself only for entries it has persisted", () => {
    const c = new Cluster([1]);
    c.elect(1);
    c.node(1).rn.propose(enc("x"));
    const rd = c.node(1).rn.ready();
    expect(rd.entries.map((e) => e.index)).toEqual([3]);
    expect(rd.committedEntries).toEqual([]); // not committed before it is durable
    c.node(1).storage.append(rd.entries);
    c.node(1).rn.advance(rd);
    const rd2 = c.node(1).rn.ready();
    expect(rd2.hardState?.commit).toBe(3);
    expect(rd2.committedEntries.map((e) => e.index)).toEqual([3]);
    c.node(1).rn.advance(rd2);
  });

  test("Flow control: in probe state at most one append is outstanding", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.isolate(2);
    for (let i = 0; i < 5; i++) c.node(1).rn.propose(enc(`p${i}`));
    c.stabilize();
    c.node(1).rn.raft.reportUnreachable(2);
    const pr = c.raft(1).prs.get(2);
    expect(pr?.state).toBe("probe");
    for (let i = 0; i < 5; i++) c.node(1).rn.propose(enc(`q${i}`));
    const toTwo = c.take().filter((m) => m.to === 2 && m.type === "append");
    expect(toTwo.length).toBeLessThanOrEqual(1);
  });

  test("Flow control: in replicate state at most inflightMessagesMax appends are in flight", () => {
    const c = new Cluster([1, 2, 3], { config: { inflightMessagesMax: 3, msgBytesMax: 1 } });
    c.elect(1);
    c.cut.add("2->1"); // acknowledgements from 2 are lost
    for (let i = 0; i < 10; i++) c.node(1).rn.propose(enc(`p${i}`));
    const toTwo = c.take().filter((m) => m.to === 2 && m.type === "append");
    expect(toTwo.length).toBe(3);
    expect(toTwo.every((m) => m.type === "append" && m.entries.length === 1)).toBe(true);
    c.heal();
    c.stabilize();
    for (let t = 0; t < 3; t++) {
      c.tickAll();
      c.stabilize();
    }
    expect(c.raft(2).log.lastIndex()).toBe(c.raft(1).log.lastIndex());
  });

  test("Proposals are batched: many proposals between Readies go out as one append per follower", () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    for (let i = 0; i < 100; i++) c.node(1).rn.propose(enc(`p${i}`));
    const apps = c.take().filter((m) => m.type === "append");
    expect(apps.length).toBe(2);
    expect(apps.every((m) => m.type === "append" && m.entries.length === 100)).toBe(true);
  });

  test("Log Matching: after any repair, logs that share an (index, term) are identical up to it", () => {
    const c = new Cluster([1, 2, 3, 4, 5], {
      logs: {
        1: { terms: [2, 2, 4, 4, 5], term: 5 },
        2: { terms: [2, 3, 3, 3], term: 5 },
        3: { terms: [2, 2, 4], term: 5 },
        4: { terms: [], term: 5 },
        5: { terms: [2, 2, 2, 2, 2, 2, 2], term: 5 },
      },
    });
    c.node(1).rn.campaign();
    c.stabilize();
    expect(c.raft(1).role).toBe("leader");
    const terms = (id: number) => {
      const log = c.raft(id).log;
      const out: (number | undefined)[] = [];
      for (let i = 1; i <= log.lastIndex(); i++) out.push(log.term(i));
      return out;
    };
    for (const id of [2, 3, 4, 5]) expect(terms(id)).toEqual(terms(1));
  });

  test("an acknowledgement queued in an older term is dropped when a newer leader rewrites the log before it is sent", () => {
    // The runtime may still be writing an earlier Ready while these two appends arrive.
    const c = new Cluster([1, 2, 3]);
    const rn = c.node(2).rn;
    rn.step(app(2, 2, 3, 1, [ent(4, 2), ent(5, 2)], 3));
    rn.step({ type: "append", from: 3, to: 2, term: 3, logIndex: 3, logTerm: 1, entries: [ent(4, 3)], commit: 3 });
    const rd = rn.ready();
    // "I hold 4/2 and 5/2" would be false once this Ready is persisted: only the term-3 answer goes out.
    expect(rd.messages.map(fmt)).toEqual(["2->3 append-resp t3 index=4"]);
    expect(rd.entries.map((e) => `${e.index}/${e.term}`)).toEqual(["4/3"]);
    rn.advance(rd);
  });
});
