// Change events of the state machine: what a command did to which key, as Redis's
// notifyKeyspaceEvent reports it (a type class, an event name, a key), and the messages PUBLISH
// sends. Commands report them to ctx.events while they apply; the node around the state machine
// turns them into keyspace notifications, pub/sub deliveries and KV.WATCH records. Pure.

/** Redis's notification classes (server.h NOTIFY_*), as `notify-keyspace-events` spells them. */
export const NOTIFY_KEYSPACE = 1 << 0; // K
export const NOTIFY_KEYEVENT = 1 << 1; // E
export const NOTIFY_GENERIC = 1 << 2; // g
export const NOTIFY_STRING = 1 << 3; // $
export const NOTIFY_LIST = 1 << 4; // l
export const NOTIFY_SET = 1 << 5; // s
export const NOTIFY_HASH = 1 << 6; // h
export const NOTIFY_ZSET = 1 << 7; // z
export const NOTIFY_EXPIRED = 1 << 8; // x
export const NOTIFY_EVICTED = 1 << 9; // e
export const NOTIFY_STREAM = 1 << 10; // t
export const NOTIFY_KEY_MISS = 1 << 11; // m
export const NOTIFY_MODULE = 1 << 13; // d
export const NOTIFY_NEW = 1 << 14; // n
/** A = g$lshzxetd, as Redis's NOTIFY_ALL. */
export const NOTIFY_ALL = NOTIFY_GENERIC | NOTIFY_STRING | NOTIFY_LIST | NOTIFY_SET | NOTIFY_HASH | NOTIFY_ZSET | NOTIFY_EXPIRED | NOTIFY_EVICTED | NOTIFY_STREAM | NOTIFY_MODULE;
/**
 * kv's own class, never a keyspace notification (Redis sends none for FLUSHALL/FLUSHDB): the
 * whole keyspace was removed. KV.WATCH reports it to every watcher, with an empty key.
 */
export const NOTIFY_FLUSH = 1 << 20;

/** Where the state machine reports what it changes. Calls happen during apply, right after the change. */
export interface KvEvents {
  /** `key` changed: `event` as Redis names it (set, del, expire, expired, incrby, rename_from...). */
  keyEvent(cls: number, event: string, key: string): void;
  /** Also report `new` (class n) when a write creates a key: costs a lookup of each key before each write. */
  readonly newKeys: boolean;
  /** PUBLISH (sharded: SPUBLISH) applied: delivers to this node's subscribers, returns how many got it. */
  publish(channel: string, message: string, sharded: boolean): number;
}

const FLAG_CLASSES: readonly [string, number][] = [
  ["g", NOTIFY_GENERIC],
  ["$", NOTIFY_STRING],
  ["l", NOTIFY_LIST],
  ["s", NOTIFY_SET],
  ["h", NOTIFY_HASH],
  ["z", NOTIFY_ZSET],
  ["x", NOTIFY_EXPIRED],
  ["e", NOTIFY_EVICTED],
  ["t", NOTIFY_STREAM],
  ["d", NOTIFY_MODULE],
];

/** `notify-keyspace-events` text to flags (Redis's keyspaceEventsStringToFlags); null for an unknown character. */
export function parseNotifyFlags(text: string): number | null {
  let flags = 0;
  for (const c of text) {
    if (c === "A") flags |= NOTIFY_ALL;
    else if (c === "K") flags |= NOTIFY_KEYSPACE;
    else if (c === "E") flags |= NOTIFY_KEYEVENT;
    else if (c === "m") flags |= NOTIFY_KEY_MISS;
    else if (c === "n") flags |= NOTIFY_NEW;
    else {
      const hit = FLAG_CLASSES.find(([ch]) => ch === c);
      if (hit === undefined) return null;
      flags |= hit[1];
    }
  }
  return flags;
}

/** Flags to text as CONFIG GET shows them (Redis's keyspaceEventsFlagsToString). */
export function notifyFlagsToString(flags: number): string {
  let s = "";
  if ((flags & NOTIFY_ALL) === NOTIFY_ALL) s += "A";
  else {
    for (const [c, bit] of FLAG_CLASSES) if (flags & bit) s += c;
    if (flags & NOTIFY_NEW) s += "n"; // only here, as Redis 7.0 (A hides it)
  }
  if (flags & NOTIFY_KEYSPACE) s += "K";
  if (flags & NOTIFY_KEYEVENT) s += "E";
  if (flags & NOTIFY_KEY_MISS) s += "m";
  return s;
}
