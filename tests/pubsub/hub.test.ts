// The hub alone (no sockets): fan-out counts and frames per protocol, keyspace channels by flags,
// watchers closed when a snapshot replaces the keyspace under them.
import { expect, test } from "bun:test";
import { NOTIFY_GENERIC, NOTIFY_STRING, parseNotifyFlags } from "../../src/kv/events.ts";
import { ReplyBuffer } from "../../src/resp/encode.ts";
import { PubSubHub } from "../../src/server/pubsub.ts";
import type { Conn } from "../../src/server/server.ts";

function fakeConn(proto: 2 | 3): Conn {
  return { proto, subs: null } as unknown as Conn;
}

function setup() {
  const pushed = new Map<Conn, string[]>();
  const dropped: string[] = [];
  const hub = new PubSubHub(100, 1 << 20, 1);
  let applied = 0;
  hub.attach({
    push: (c, b) => pushed.set(c, [...(pushed.get(c) ?? []), Buffer.from(b).toString("latin1")]),
    drop: (c, why) => {
      dropped.push(why);
      hub.dropConn(c);
    },
    appliedIndex: () => applied,
  });
  const values = { valueOf: (k: string) => `v(${k})` };
  return { hub, pushed, dropped, values, setApplied: (n: number) => (applied = n) };
}

test("publish: receivers counted per subscription, frames in each subscriber's protocol", () => {
  const { hub, pushed } = setup();
  const a = fakeConn(2);
  const b = fakeConn(3);
  const out = new ReplyBuffer(256);
  hub.subscribe(a, "channels", ["news"], out);
  hub.subscribe(b, "patterns", ["n*", "*s"], out);
  expect(hub.publish(5, "news", "hi", false)).toBe(3);
  expect(pushed.get(a)).toEqual(["*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"]);
  expect(pushed.get(b)).toEqual([">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n", ">4\r\n$8\r\npmessage\r\n$2\r\n*s\r\n$4\r\nnews\r\n$2\r\nhi\r\n"]);
  expect(hub.publish(6, "news", "sharded", true)).toBe(0); // shard channels are their own namespace
  hub.dropConn(a);
  expect(hub.channels.size).toBe(0);
  expect(hub.publish(7, "news", "x", false)).toBe(2);
});

test("keyspace channels follow the flags; nothing is sent while they are off", () => {
  const { hub, pushed, values } = setup();
  const s = fakeConn(2);
  hub.subscribe(s, "patterns", ["__key*"], new ReplyBuffer(256));
  hub.keyEvent(3, NOTIFY_STRING, "set", "k", values);
  expect(pushed.get(s)).toBeUndefined();
  hub.notifyFlags = parseNotifyFlags("E$")!;
  hub.keyEvent(4, NOTIFY_GENERIC, "del", "k", values); // g not set
  hub.keyEvent(5, NOTIFY_STRING, "set", "k", values);
  expect(pushed.get(s)).toEqual(["*4\r\n$8\r\npmessage\r\n$6\r\n__key*\r\n$18\r\n__keyevent@0__:set\r\n$1\r\nk\r\n"]);
});

test("a snapshot restored under a watcher closes it; the history starts after the snapshot", () => {
  const { hub, pushed, dropped, values, setApplied } = setup();
  const w = fakeConn(3);
  const out = new ReplyBuffer(1024);
  out.proto = 3;
  hub.keyEvent(2, NOTIFY_STRING, "set", "a", values);
  setApplied(2);
  hub.watch(w, "*", 2, out);
  expect(out.view().toString("latin1")).toBe(">3\r\n$8\r\nkv.watch\r\n$1\r\n*\r\n:2\r\n>6\r\n$9\r\nkv.change\r\n$1\r\n*\r\n:2\r\n$3\r\nset\r\n$1\r\na\r\n$4\r\nv(a)\r\n");
  hub.keyEvent(3, NOTIFY_STRING, "set", "b", values);
  expect(pushed.get(w)).toEqual([">6\r\n$9\r\nkv.change\r\n$1\r\n*\r\n:3\r\n$3\r\nset\r\n$1\r\nb\r\n$4\r\nv(b)\r\n"]);
  hub.restored(50);
  expect(dropped).toEqual(["a snapshot at index 50 replaced the keyspace under its KV.WATCH"]);
  expect(hub.watchers.size).toBe(0);
  expect(hub.history.since(50)).toBeNull();
  expect(hub.history.since(51)).toEqual([]);
});
