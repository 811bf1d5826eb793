// CONFIG GET/SET of notify-keyspace-events and of client-output-buffer-limit's pubsub class. Both
// are this node's own settings, as Redis's CONFIG is per server (docs/cluster.md, "Keyspace
// notifications"): set them on every node whose clients subscribe.
import { notifyFlagsToString, parseNotifyFlags } from "../kv/events.ts";
import { ConfigError } from "../errors.ts";
import { parseBytes } from "../config.ts";
import type { ReplyWriter } from "../resp/encode.ts";
import type { KvServer } from "./server.ts";

/** INFO stats lines: Redis's pubsub counts, and kv's watches and watch history. */
export function pubsubInfoLines(server: KvServer): string[] {
  const p = server.pubsub;
  let watches = 0;
  for (const conns of p.watchers.values()) watches += conns.size;
  return [
    `pubsub_channels:${p.channels.size}`,
    `pubsub_patterns:${p.patterns.size}`,
    `pubsubshard_channels:${p.shard.size}`,
    `kv_pubsub_messages_delivered:${p.delivered}`,
    `kv_watches:${watches}`,
    `kv_watch_history_records:${p.history.size}`,
    `kv_watch_history_bytes:${p.history.heldBytes}`,
    `kv_watch_history_from_index:${p.history.startIndex}`,
  ];
}

export function configGetPubsub(server: KvServer): [string, string][] {
  return [["notify-keyspace-events", notifyFlagsToString(server.pubsub.notifyFlags)]];
}

function setError(name: string, why: string): string {
  return `ERR CONFIG SET failed (possibly related to argument '${name}') - ${why}`;
}

/**
 * CONFIG SET name value [name value ...] when every name is one of these (true: answered). All or
 * nothing: every value is checked before any is applied, as Redis does.
 */
export function configSetPubsub(server: KvServer, argv: string[], out: ReplyWriter): boolean {
  const pairs: [string, string][] = [];
  for (let i = 2; i < argv.length; i += 2) pairs.push([argv[i]!.toLowerCase(), argv[i + 1] ?? ""]);
  if (!pairs.every(([n]) => n === "notify-keyspace-events" || n === "client-output-buffer-limit")) return false;
  if ((argv.length - 2) % 2 !== 0) {
    out.error("ERR wrong number of arguments for 'config|set' command");
    return true;
  }
  let flags: number | undefined;
  let limit: { hardBytes: number; softBytes: number; softSeconds: number } | undefined;
  for (const [name, value] of pairs) {
    if (name === "notify-keyspace-events") {
      const f = parseNotifyFlags(value);
      if (f === null) {
        out.error(setError(name, "Invalid event class character. Use 'Ag$lshzxeKEtmdn'."));
        return true;
      }
      flags = f;
      continue;
    }
    // client-output-buffer-limit: `<class> <hard> <soft> <seconds>` groups; kv takes the pubsub class
    // (normal is --client-output-buffer-limit, fixed at start; kv has no replica class).
    const words = value.trim().split(/\s+/);
    if (words.length % 4 !== 0 || words.length === 0) {
      out.error(setError(name, "Wrong number of arguments in buffer limit configuration."));
      return true;
    }
    for (let i = 0; i < words.length; i += 4) {
      const cls = words[i]!.toLowerCase();
      if (cls !== "pubsub") {
        out.error(setError(name, cls === "normal" || cls === "replica" || cls === "slave" ? `kv sets only the pubsub class at run time (${cls}: restart with --client-output-buffer-limit)` : "Invalid client class specified in buffer limit configuration."));
        return true;
      }
      try {
        const hardBytes = parseBytes(words[i + 1]!, name);
        const softBytes = parseBytes(words[i + 2]!, name);
        const softSeconds = Number(words[i + 3]);
        if (!/^\d+$/.test(words[i + 3]!)) throw new ConfigError("soft seconds");
        if (hardBytes < 1) {
          out.error(setError(name, "kv holds no unbounded subscriber output: the hard limit must be at least 1 byte"));
          return true;
        }
        limit = { hardBytes, softBytes, softSeconds };
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        out.error(setError(name, "Error in hard, soft or soft_seconds setting in buffer limit configuration."));
        return true;
      }
    }
  }
  if (flags !== undefined) server.pubsub.notifyFlags = flags;
  if (limit !== undefined) server.config.pubsubOutputLimit = limit;
  out.ok();
  return true;
}
