// scratch: node-side cost per write, DurableLog vs one-member ClusterNode (fsync mode from argv)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setLogLevel } from "../src/log.ts";
import { DurableLog } from "../src/node/durable.ts";
import { ClusterNode } from "../src/node/cluster-node.ts";
import { ReplyBuffer } from "../src/resp/encode.ts";
setLogLevel("warn");
const fsync = (process.argv[2] ?? "always") as "always";
const BATCH = Number(process.argv[3] ?? 800), ROUNDS = Number(process.argv[4] ?? 200);
async function run(kind: "durable" | "cluster"): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "micro-"));
  const opts = { dataDir: dir, fsync, segmentBytesMax: 64 << 20, snapshotLogBytes: 1 << 30 };
  const node: any = kind === "durable" ? await DurableLog.open<number>(opts) : await ClusterNode.open<number>({ ...opts, id: 1, members: [{ id: 1, addr: "127.0.0.1:1", peer: "127.0.0.1:0" }], clusterId: "m", heartbeatMs: 50, electionMs: 300 });
  if (kind === "cluster") { node.start(); await node.whenServing(5000); }
  const out = new ReplyBuffer(64);
  let applied = 0;
  node.replyTo = () => { out.reset(); return out; };
  node.onApplied = () => { applied++; };
  const t0 = performance.now(); const c0 = process.cpuUsage();
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < BATCH; i++) node.propose(["SET", `key:${(r * BATCH + i) % 100000}`, "xxxxxxxxxxxxxxxx"], Date.now(), i);
    const want = (r + 1) * BATCH;
    while (applied < want) await new Promise((res) => setImmediate(res));
  }
  const c = process.cpuUsage(c0); const ms = performance.now() - t0;
  await node.close(); rmSync(dir, { recursive: true, force: true });
  const n = BATCH * ROUNDS;
  console.log(`${kind}: ${(n / ms * 1000).toFixed(0)} writes/s, cpu ${((c.user + c.system) / n).toFixed(2)} us/write`);
  return ms;
}
const which = process.argv[5]; for (let i = 0; i < 3; i++) { if (which !== "cluster") await run("durable"); if (which !== "durable") await run("cluster"); }
