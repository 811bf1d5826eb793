// A cluster member restarted by hand with only --id, --port and --data-dir (no --cluster, no
// --peer-port) listens for peers where its group expects it (its address in raft-members.json),
// so the group keeps a quorum and the member catches up.
import { expect, test } from "bun:test";
import { openSync } from "node:fs";
import { join } from "node:path";
import { readClusterFile } from "../../src/cli/cluster-layout.ts";
import { KV_BIN } from "../helpers/server.ts";
import { RawResp } from "../helpers/resp-raw.ts";
import { clusterCliHarness, upDetached } from "../helpers/cluster-cli.ts";

const harness = clusterCliHarness("kv-member-flags-it-");
const { started, kv, run } = harness;

test("two members restarted without --cluster or --peer-port rejoin their group on their peer ports", async () => {
  const { dir, base } = await upDetached(harness, 3);
  const file = readClusterFile(dir)!;
  expect(await call(base, ["SET", "k", "before"])).toEqual(["+OK\r\n"]);
  // Stop two of the three (no quorum left), then start them again with the bare minimum of flags.
  for (const id of [2, 3]) process.kill(file.nodes.find((n) => n.id === id)!.pid, "SIGTERM");
  for (let i = 0; i < 100 && file.nodes.filter((n) => n.id !== 1).some((n) => isRunning(n.pid)); i++) await Bun.sleep(50);
  const logs: string[] = [];
  for (const id of [2, 3]) {
    const log = join(dir, `bare-${id}.log`);
    logs.push(log);
    const fd = openSync(log, "a");
    const p = Bun.spawn([KV_BIN, "serve", "--id", String(id), "--port", String(base + id - 1), "--data-dir", join(dir, `n${id}`)], { stdout: fd, stderr: fd, stdin: "ignore" });
    started.push(p.pid);
  }
  let reply: string[] = [];
  for (let i = 0; i < 100; i++) {
    reply = await call(base + 1, ["SET", "k", "after"]).catch(() => ["(refused)"]);
    if (reply[0] === "+OK\r\n") break;
    await Bun.sleep(100);
  }
  expect(reply).toEqual(["+OK\r\n"]);
  expect(await call(base + 2, ["GET", "k"])).toEqual(["$5\r\nafter\r\n"]);
  for (const [i, log] of logs.entries()) expect(await Bun.file(log).text()).toContain(`peers on ${base + i + 1 + 10_000}`);
  expect((await kv("cluster", "down", "--data-dir", dir)).code).toBe(0);
}, 60_000);

async function call(port: number, argv: string[]): Promise<string[]> {
  const c = await RawResp.connect(port);
  try {
    return await c.call([argv], 10_000);
  } finally {
    c.close();
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("kv cluster restart whose output is cut off (| head -1) still restarts every node and exits 0", async () => {
  const { dir } = await upDetached(harness, 3);
  const before = readClusterFile(dir)!.nodes.map((n) => n.pid);
  // bash reports the exit code of kv (the first command of the pipe) after head closed the pipe.
  const r = await run(["bash", "-c", `"${KV_BIN}" cluster restart --data-dir "${dir}" | head -1; exit \${PIPESTATUS[0]}`]);
  expect(r.stdout.split("\n").filter((l) => l !== "").length).toBe(1);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const after = readClusterFile(dir)!.nodes;
  for (const n of after) started.push(n.pid);
  expect(after.every((n) => !before.includes(n.pid))).toBe(true);
  const status = await kv("cluster", "status", "--data-dir", dir);
  expect(status.stdout).toStartWith("healthy: 3/3 voters up");
  expect((await kv("cluster", "down", "--data-dir", dir)).code).toBe(0);
}, 60_000);
