// Starts a cluster of real ./kv processes (`kv serve --cluster ...`) on free loopback ports.
import type { TCPSocketListener } from "bun";
import { startKv, type KvProcess } from "./server.ts";
import { tempDirs } from "./tmp.ts";

const newDir = tempDirs("kv-cluster-");

/**
 * A base port such that base..base+n-1 and each +10000 are free now (retried a few times), all below
 * Linux's ephemeral range (32768 up): a node restarted later binds its ports again, when any port of
 * that range may have been taken by an outgoing connection meanwhile.
 */
export async function freePortRange(n: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 12_000 + Math.floor(Math.random() * (32_768 - 10_000 - 12_000 - n));
    const held: TCPSocketListener<undefined>[] = [];
    let ok = true;
    for (let i = 0; i < n && ok; i++) {
      for (const port of [base + i, base + i + 10000]) {
        try {
          held.push(Bun.listen<undefined>({ hostname: "127.0.0.1", port, socket: { data() {} } }));
        } catch {
          ok = false;
          break;
        }
      }
    }
    for (const l of held) l.stop(true);
    if (ok) return base;
  }
  throw new Error("no free port range found");
}

export interface ClusterNodeProc {
  id: number;
  port: number;
  dataDir: string;
  proc: KvProcess | null;
}

export interface TestCluster {
  nodes: ClusterNodeProc[];
  spec: string;
  /** Starts (or restarts) node `id` on its data dir. */
  start(id: number, env?: Record<string, string>): Promise<KvProcess>;
  /** Stops node `id` (SIGKILL by default: a crash). */
  stop(id: number, signal?: NodeJS.Signals): Promise<void>;
  /** The id of the node whose log last says it leads, among running ones; waits up to timeoutMs. */
  leader(timeoutMs?: number): Promise<number>;
  stopAll(): Promise<void>;
}

export async function startCluster(n: number, extra: string[] = [], env: Record<string, string> = {}): Promise<TestCluster> {
  const base = await freePortRange(n);
  const nodes: ClusterNodeProc[] = [];
  for (let i = 1; i <= n; i++) nodes.push({ id: i, port: base + i - 1, dataDir: newDir(), proc: null });
  const spec = nodes.map((x) => `${x.id}=127.0.0.1:${x.port}`).join(",");
  const c: TestCluster = {
    nodes,
    spec,
    async start(id, env2 = {}) {
      const node = nodes[id - 1]!;
      node.proc = await startKv(["--id", String(id), "--cluster", spec, ...extra], { dataDir: node.dataDir, port: node.port, env: { ...env, ...env2 } });
      return node.proc;
    },
    async stop(id, signal = "SIGKILL") {
      const node = nodes[id - 1]!;
      if (node.proc === null) return;
      await node.proc.stop({ signal, keepData: true });
      node.proc = null;
    },
    async leader(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        let best = 0;
        let bestTerm = -1;
        for (const node of nodes) {
          if (node.proc === null) continue;
          const out = node.proc.output();
          const ms = [...out.matchAll(/leader of term (\d+)|following node \d+ \(term (\d+)\)|no leader known \(term (\d+)\)/g)];
          const last = ms[ms.length - 1];
          if (last?.[1] !== undefined && Number(last[1]) > bestTerm) {
            best = node.id;
            bestTerm = Number(last[1]);
          }
        }
        // A leader counts once no running node reports a newer term.
        if (best !== 0) {
          const newer = nodes.some((node) => {
            if (node.proc === null) return false;
            const terms = [...node.proc.output().matchAll(/term (\d+)/g)].map((m) => Number(m[1]));
            return terms.length > 0 && Math.max(...terms) > bestTerm;
          });
          if (!newer) return best;
        }
        await Bun.sleep(20);
      }
      throw new Error(`no leader within ${timeoutMs} ms`);
    },
    async stopAll() {
      for (const node of nodes) await c.stop(node.id, "SIGTERM");
    },
  };
  await Promise.all(nodes.map((x) => c.start(x.id)));
  return c;
}
