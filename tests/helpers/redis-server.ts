// Debian's redis-server as the reference of the differential tests: started on a free loopback
// port with no persistence, in a directory the test owns, and recognised as ours (not another
// process that took the port first) by the directory it reports.
import type { Subprocess } from "bun";
import { RawResp } from "./resp-raw.ts";

export const REDIS_SERVER = Bun.which("redis-server");

export interface RedisProcess {
  readonly port: number;
  readonly proc: Subprocess;
  /** SIGKILL (it holds nothing worth flushing) and wait for the exit. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/**
 * Starts redis-server in `dir` with `args` added (e.g. `--aclfile`); `before` are commands sent
 * ahead of the CONFIG GET that identifies it (e.g. an AUTH when the default user has a password).
 * Throws when redis-server is not installed or does not start (5 attempts, each bounded).
 */
export async function startRedisServer(dir: string, args: readonly string[] = [], before: readonly string[][] = []): Promise<RedisProcess> {
  if (REDIS_SERVER === null) throw new Error("redis-server is not installed: the differential tests need it (apt-get install redis-server)");
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const proc = Bun.spawn([REDIS_SERVER, "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", ...args], {
      cwd: dir,
      stdout: "ignore",
      stderr: "ignore",
    });
    for (let i = 0; i < 200 && proc.exitCode === null; i++) {
      try {
        const c = await RawResp.connect(port);
        const replies = await c.call([...before, ["CONFIG", "GET", "dir"]], 2000);
        c.close();
        if (replies[replies.length - 1]!.includes(dir)) {
          return {
            port,
            proc,
            async stop() {
              proc.kill("SIGKILL");
              await proc.exited;
            },
          };
        }
      } catch {}
      await Bun.sleep(10);
    }
    proc.kill("SIGKILL");
    await proc.exited;
  }
  throw new Error("redis-server did not start");
}
