// The pure parts: notify-keyspace-events flags, the watch history's bounds, and the events the
// state machine reports as entries apply (expiry by the entry's time, not a clock).
import { expect, test } from "bun:test";
import { KvStateMachine } from "../../src/kv/fsm.ts";
import { NOTIFY_ALL, NOTIFY_EXPIRED, NOTIFY_KEYEVENT, NOTIFY_KEYSPACE, notifyFlagsToString, parseNotifyFlags } from "../../src/kv/events.ts";
import { WatchHistory } from "../../src/kv/watch-history.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";

test("notify-keyspace-events flags: parse and print as Redis", () => {
  expect(parseNotifyFlags("")).toBe(0);
  expect(parseNotifyFlags("KEA")).toBe(NOTIFY_ALL | NOTIFY_KEYSPACE | NOTIFY_KEYEVENT);
  expect(notifyFlagsToString(parseNotifyFlags("KEA")!)).toBe("AKE");
  expect(notifyFlagsToString(parseNotifyFlags("Ex$g")!)).toBe("g$xE");
  expect(notifyFlagsToString(parseNotifyFlags("gn")!)).toBe("gn");
  expect(notifyFlagsToString(parseNotifyFlags("Anm")!)).toBe("Am");
  expect(parseNotifyFlags("KQ")).toBeNull();
  expect(parseNotifyFlags("x")).toBe(NOTIFY_EXPIRED);
});

test("watch history: whole indexes go past the bounds; since() says what is no longer held", () => {
  const h = new WatchHistory(4, 1 << 20, 1);
  for (let i = 1; i <= 3; i++) {
    h.add(i, "set", `k${i}`, "v");
    h.add(i, "expire", `k${i}`, "v");
  }
  // 6 records over the bound of 4: index 1 goes whole (2 records), then still 4 ≤ 4.
  expect(h.size).toBe(4);
  expect(h.startIndex).toBe(2);
  expect(h.since(1)).toBeNull();
  expect(h.since(2)!.map((r) => r.index)).toEqual([2, 2, 3, 3]);
  expect(h.since(3)!.map((r) => r.event)).toEqual(["set", "expire"]);
  expect(h.since(9)).toEqual([]);
  h.reset(10);
  expect(h.size).toBe(0);
  expect(h.since(10)).toBeNull();
  expect(h.since(11)).toEqual([]);
  const b = new WatchHistory(100, 200, 1);
  for (let i = 1; i <= 10; i++) b.add(i, "set", "k", "x".repeat(50));
  expect(b.heldBytes).toBeLessThanOrEqual(200);
  expect(b.since(b.startIndex)!.length).toBe(b.size);
  const none = new WatchHistory(0, 0, 1);
  none.add(5, "set", "k", "v");
  expect(none.since(5)).toBeNull();
  expect(none.since(6)).toEqual([]);
});

function recording(): { sm: KvStateMachine; events: string[]; run: (t: number, ...argv: string[]) => string } {
  const sm = new KvStateMachine();
  const events: string[] = [];
  sm.events = {
    newKeys: false,
    keyEvent: (cls, event, key) => void events.push(`${cls}:${event}:${key}`),
    publish: (ch, msg, sharded) => (events.push(`publish:${ch}:${msg}:${sharded}`), 7),
  };
  const out = new ReplyBuffer(256);
  return {
    sm,
    events,
    run: (t, ...argv) => {
      out.reset();
      sm.apply(argv, t, out);
      return out.view().toString("latin1");
    },
  };
}

test("the state machine reports each change once, after it, with Redis's event names", () => {
  const { sm, events, run } = recording();
  run(1000, "SET", "a", "1", "PX", "100");
  run(1000, "SET", "b", "1", "NX");
  run(1000, "SET", "b", "2", "NX"); // not set: nothing
  expect(run(1000, "PUBLISH", "ch", "m")).toBe(":7\r\n");
  run(1000, "RENAME", "b", "c");
  // `a` expired at 1100: the next write touching it reports `expired` first (the entry's time decides).
  run(2000, "INCR", "a");
  expect(events).toEqual(["8:set:a", "4:expire:a", "8:set:b", "publish:ch:m:false", "4:rename_from:b", "4:rename_to:c", "256:expired:a", "8:incrby:a"]);
  events.length = 0;
  run(2000, "SET", "e", "1", "PX", "10");
  expect(sm.applyExpire(["e", "c"], 5000)).toBe(1);
  run(5000, "FLUSHALL");
  expect(events).toEqual(["8:set:e", "4:expire:e", "256:expired:e", `${1 << 20}:flushall:`]);
  // Reads report nothing.
  events.length = 0;
  sm.read(["GET", "a"], 9_000_000, new ReplyBuffer(64));
  expect(events).toEqual([]);
});

test("without a listener nothing is reported and replies are unchanged", () => {
  const sm = new KvStateMachine();
  const out = new ReplyBuffer(64);
  sm.apply(["PUBLISH", "ch", "m"], 1, out);
  expect(out.view().toString("latin1")).toBe(":0\r\n");
});

test("watch history: the ring grows, wraps and keeps exactly the latest records, in order", () => {
  const h = new WatchHistory(1500, 1 << 30, 1);
  for (let i = 1; i <= 5000; i++) h.add(i, i % 2 ? "set" : "del", `k${i}`, i % 2 ? String(i) : null);
  expect(h.size).toBe(1500);
  expect(h.startIndex).toBe(3501);
  const all = h.since(3501)!;
  expect(all.map((r) => r.index)).toEqual(Array.from({ length: 1500 }, (_, i) => 3501 + i));
  expect(all[0]).toEqual({ index: 3501, event: "set", key: "k3501", value: "3501" });
  expect(all[1]).toEqual({ index: 3502, event: "del", key: "k3502", value: null });
  expect(h.since(4999)!.map((r) => r.key)).toEqual(["k4999", "k5000"]);
  const bytesEach = 64 + 3 + 5 + 4; // overhead + "set" + "k1234" + "1234"
  const b = new WatchHistory(100_000, 10 * bytesEach, 1);
  for (let i = 1001; i <= 3000; i += 2) b.add(i, "set", `k${i}`, String(i));
  expect(b.size).toBe(10);
  expect(b.heldBytes).toBe(10 * bytesEach);
  expect(b.startIndex).toBe(2980); // just past the last index dropped (2979)
});

test("`new` events: only when wanted, before the write's own events, for keys it adds", () => {
  const sm = new KvStateMachine();
  const events: string[] = [];
  let wanted = false;
  sm.events = {
    get newKeys() {
      return wanted;
    },
    keyEvent: (_cls, event, key) => void events.push(`${event}:${key}`),
    publish: () => 0,
  };
  const out = new ReplyBuffer(64);
  sm.apply(["SET", "a", "1"], 1, out);
  wanted = true;
  sm.apply(["MSET", "a", "2", "b", "3"], 1, out);
  sm.apply(["RENAME", "b", "a"], 1, out);
  sm.apply(["RENAMENX", "a", "a2"], 1, out);
  sm.apply(["INCR", "a2"], 1, out); // a2 holds "3"
  sm.apply(["SETNX", "a2", "x"], 1, out); // not set: nothing
  expect(events).toEqual(["set:a", "set:a", "new:b", "set:b", "new:a", "rename_from:b", "rename_to:a", "new:a2", "rename_from:a", "rename_to:a2", "incrby:a2"]);
});
