// KV.BACKUP: a consistent snapshot of a running node, read by a client in chunks (kv backup).
//   KV.BACKUP BEGIN              -> [token, index, term, cluster id, bytes, members (JSON), node id]
//   KV.BACKUP READ <token> <off> -> up to 1 MiB of the snapshot file from offset <off> (bulk)
//   KV.BACKUP END <token>        -> OK (closes it; an idle one is closed after BACKUP_IDLE_MS)
// BEGIN takes a read barrier (so the backup holds every write acknowledged before it was sent),
// snapshots the node at its applied index (as SAVE does: a copy-on-write view streamed to the
// snapshot file, the node serving meanwhile) and keeps the file open; READ reads it from disk, so
// the node never holds the backup in memory and serves other clients between chunks.
import { closeSync, read } from "node:fs";
import type { CommandSpec } from "../kv/command.ts";
import { ClusterError } from "../node/cluster-node.ts";
import { BACKUP_CHUNK_BYTES } from "../node/backup.ts";
import type { ServerCtx } from "./dispatch.ts";

/** Backups open at once on a node; past it BEGIN is refused. */
export const BACKUPS_OPEN_MAX = 4;
/** A backup not read for this long is closed. */
export const BACKUP_IDLE_MS = 60_000;

interface OpenBackup {
  fd: number;
  bytes: number;
  timer: ReturnType<typeof setTimeout>;
}

const open = new Map<string, OpenBackup>();
let nextToken = 1;

function close(token: string): void {
  const b = open.get(token);
  if (b === undefined) return;
  open.delete(token);
  clearTimeout(b.timer);
  closeSync(b.fd);
}

function touch(token: string, b: OpenBackup): void {
  clearTimeout(b.timer);
  b.timer = setTimeout(() => close(token), BACKUP_IDLE_MS);
  b.timer.unref?.();
}

export const BACKUP_COMMANDS: readonly CommandSpec<ServerCtx>[] = [
  {
    name: "kv.backup",
    arity: -2,
    flags: ["admin", "noquorum-ok"],
    firstKey: 0,
    lastKey: 0,
    keyStep: 0,
    exec(ctx, argv, out) {
      const node = ctx.server.node;
      const sub = argv[1]!.toLowerCase();
      if (sub === "begin" && argv.length === 2) {
        if (open.size >= BACKUPS_OPEN_MAX) {
          out.error(`ERR ${BACKUPS_OPEN_MAX} backups are already being read from this node: retry later`);
          return;
        }
        const settle = ctx.server.defer(ctx.conn);
        node.openBackup().then(
          (b) => {
            const token = `${process.pid}.${nextToken++}`;
            const entry: OpenBackup = { fd: b.fd, bytes: b.bytes, timer: setTimeout(() => {}, 0) };
            open.set(token, entry);
            touch(token, entry);
            settle((o) => {
              o.array(7);
              o.bulk(token);
              o.int(b.index);
              o.int(b.term);
              o.bulk(b.clusterId);
              o.int(b.bytes);
              o.bulk(JSON.stringify(b.members));
              o.int(node.id);
            });
          },
          (e: unknown) => {
            if (e instanceof ClusterError) settle((o) => o.error(e.reply));
            else settle((o) => o.error(`ERR backup failed: ${(e as Error).message}`));
          },
        );
        return;
      }
      if (sub === "read" && argv.length === 4) {
        const b = open.get(argv[2]!);
        const offset = /^\d{1,15}$/.test(argv[3]!) ? Number(argv[3]) : NaN;
        if (b === undefined) {
          out.error("ERR no such backup (never begun, ended, or idle too long)");
          return;
        }
        if (!(offset >= 0 && offset <= b.bytes)) {
          out.error(`ERR offset must be an integer in 0..${b.bytes}`);
          return;
        }
        touch(argv[2]!, b);
        const n = Math.min(BACKUP_CHUNK_BYTES, b.bytes - offset);
        const buf = Buffer.allocUnsafe(n);
        const settle = ctx.server.defer(ctx.conn);
        read(b.fd, buf, 0, n, offset, (err, got) => {
          if (err !== null || got !== n) settle((o) => o.error(`ERR reading the backup at ${offset}: ${err?.message ?? `${got} of ${n} bytes`}`));
          else settle((o) => o.bulkBytes(buf));
        });
        return;
      }
      if (sub === "end" && argv.length === 3) {
        close(argv[2]!);
        out.ok();
        return;
      }
      out.error("ERR usage: KV.BACKUP BEGIN | KV.BACKUP READ <token> <offset> | KV.BACKUP END <token>");
    },
  },
];
