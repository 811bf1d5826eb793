// `kv backup --addr host:port FILE` and `kv restore FILE --data-dir DIR`: see docs/cluster.md,
// "Backup and disaster recovery", and src/node/backup.ts for the file.
import { type ArgsDef, defineCommand } from "citty";
import { closeSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { crc32 } from "node:zlib";
import { createClient } from "../client/index.ts";
import { CLIENT_TLS_ARGS, cliTls, useTlsArgs } from "./cli-tls.ts";
import { cliAuth } from "./cli-auth.ts";
import { DEFAULT_HOST, DEFAULT_PORT, parseClusterSpec, parseInteger } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { BackupError, encodeBackupHeader, restoreBackup } from "../node/backup.ts";
import type { MemberAddress } from "../node/cluster-view.ts";
import { StartupError } from "./fatal.ts";
import { refuseBadArgs } from "./strict.ts";

/** Chunks asked for ahead of the one being written (1 MiB each). */
const READS_IN_FLIGHT = 4;

const backupArgs = {
  addr: { type: "string", description: "A node of the cluster, host:port", default: `${DEFAULT_HOST}:${DEFAULT_PORT}` },
  file: { type: "positional", description: "The backup file to write", required: true },
  timeout: { type: "string", description: "Seconds to wait for the node's snapshot", default: "300" },
  ...CLIENT_TLS_ARGS,
} as const satisfies ArgsDef;

export const backup = defineCommand({
  meta: { name: "backup", description: "Write a consistent snapshot of a running node (with its log index) to FILE" },
  args: backupArgs,
  async run({ args, rawArgs }) {
    refuseBadArgs(rawArgs, backupArgs);
    useTlsArgs(args);
    const file = String(args.file);
    const timeoutMs = parseInteger(args.timeout, "--timeout", 1, 86_400) * 1000;
    const client = createClient({ ...cliTls(), addrs: args.addr, timeoutMs, connectTimeoutMs: 2000, failFast: true, readRetriesMax: 0, ...cliAuth() });
    const tmp = `${file}.partial`;
    let fd = -1;
    let token: string | undefined;
    try {
      const t0 = performance.now();
      const r = (await client.command(["KV.BACKUP", "BEGIN"], { readonly: false })) as unknown[];
      token = String(r[0]);
      const [index, term, clusterId, bytes, membersJson, node] = [Number(r[1]), Number(r[2]), String(r[3]), Number(r[4]), String(r[5]), Number(r[6])];
      fd = openSync(tmp, "w");
      const chunks: Promise<unknown>[] = [];
      const ask = (off: number) => client.command(["KV.BACKUP", "READ", token!, String(off)], { mode: "bytes", readonly: false });
      let next = 0;
      while (chunks.length < READS_IN_FLIGHT && next < bytes) {
        chunks.push(ask(next));
        next += 1024 * 1024;
      }
      let crc = 0;
      let got = 0;
      // The snapshot goes to a second temp file first: the header, which holds its CRC, comes before it.
      const bodyTmp = `${file}.body.partial`;
      const bfd = openSync(bodyTmp, "w");
      try {
        while (got < bytes) {
          const chunk = (await chunks.shift()!) as Uint8Array;
          if (chunk.length === 0) throw new Error(`the node sent an empty chunk at ${got} of ${bytes} bytes`);
          if (next < bytes) {
            chunks.push(ask(next));
            next += 1024 * 1024;
          }
          crc = crc32(chunk, crc);
          writeSync(bfd, chunk);
          got += chunk.length;
        }
        fsyncSync(bfd);
      } finally {
        closeSync(bfd);
      }
      await client.command(["KV.BACKUP", "END", token], { readonly: false });
      token = undefined;
      const header = encodeBackupHeader({ clusterId, index, term, members: JSON.parse(membersJson) as MemberAddress[], node, takenAtMs: Date.now(), snapshotBytes: bytes, snapshotCrc32: crc >>> 0 });
      writeSync(fd, header);
      const inFd = openSync(bodyTmp, "r");
      try {
        const buf = Buffer.alloc(1024 * 1024);
        for (;;) {
          const n = readSync(inFd, buf, 0, buf.length, null);
          if (n === 0) break;
          writeSync(fd, buf, 0, n);
        }
      } finally {
        closeSync(inFd);
        rmSync(bodyTmp, { force: true });
      }
      fsyncSync(fd);
      closeSync(fd);
      fd = -1;
      renameSync(tmp, file);
      console.log(`backup of cluster ${clusterId} at index ${index} (term ${term}) from node ${node}: ${bytes} bytes in ${Math.round(performance.now() - t0)} ms -> ${file}`);
    } catch (e) {
      if (fd >= 0) closeSync(fd);
      rmSync(tmp, { force: true });
      rmSync(`${file}.body.partial`, { force: true });
      if (token !== undefined) await client.command(["KV.BACKUP", "END", token], { readonly: false }).catch(() => {});
      throw new StartupError(`kv backup: ${(e as Error).message}`, {}, e);
    } finally {
      client.destroy();
    }
  },
});

const restoreArgs = {
  file: { type: "positional", description: "The backup file (kv backup)", required: true },
  "data-dir": { type: "string", description: "The new node's data dir (absent or empty)", required: true },
  id: { type: "string", description: "This node's id", default: "1" },
  host: { type: "string", description: "This node's client host (a one-member group)", default: DEFAULT_HOST },
  port: { type: "string", description: "This node's client port (a one-member group)", default: String(DEFAULT_PORT) },
  cluster: { type: "string", description: "The new cluster's members, id=host:port[@peerport],... (restore into every member's dir with the same value)" },
  "cluster-id": { type: "string", description: "The new cluster's id (default: derived from the backup and the members, alike on every member)" },
} as const satisfies ArgsDef;

export const restore = defineCommand({
  meta: { name: "restore", description: "Seed a new node's data dir from a backup (then kv serve --data-dir DIR)" },
  args: restoreArgs,
  async run({ args, rawArgs }) {
    refuseBadArgs(rawArgs, restoreArgs);
    const id = parseInteger(args.id, "--id", 1, 2 ** 31 - 1);
    let members: MemberAddress[];
    if (args.cluster !== undefined) {
      members = parseClusterSpec(args.cluster);
    } else {
      const port = parseInteger(args.port, "--port", 1, 65535);
      members = [{ id, addr: `${args.host}:${port}`, peer: `${args.host}:0` }];
    }
    const clusterId = args["cluster-id"];
    if (clusterId !== undefined && (clusterId === "" || new TextEncoder().encode(clusterId).length > 128)) throw new ConfigError("--cluster-id: 1 to 128 bytes");
    const t0 = performance.now();
    try {
      const r = await restoreBackup({ file: String(args.file), dataDir: args["data-dir"], members, id, clusterId });
      console.log(
        `restored ${r.keys} keys of cluster ${r.header.clusterId} at index ${r.header.index} (term ${r.header.term}) into ${args["data-dir"]} ` +
          `as node ${id} of new cluster ${r.clusterId} (members ${members.map((m) => m.id).join(",")}) in ${Math.round(performance.now() - t0)} ms`,
      );
    } catch (e) {
      if (e instanceof BackupError) throw new StartupError(`kv restore: ${e.message}`, { exitCode: 2 }, e);
      throw e;
    }
  },
});
