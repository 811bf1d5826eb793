// `kv serve` re-executes itself with mimalloc's purge delay set (src/allocator.ts): same PID, same
// arguments, the options in its environment and reported by INFO; a user's own values win.
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rawConnect, ROOT, startKv, type KvProcess } from "../helpers/server.ts";

let running: KvProcess[] = [];
afterEach(async () => {
  for (const k of running) await k.stop();
  running = [];
});

function environOf(pid: number): Map<string, string> {
  const env = new Map<string, string>();
  for (const kv of readFileSync(`/proc/${pid}/environ`, "latin1").split("\0")) {
    const eq = kv.indexOf("=");
    if (eq > 0) env.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  return env;
}

async function infoMemory(port: number): Promise<string> {
  const c = await rawConnect(port);
  try {
    c.write("INFO memory\r\n");
    return await c.waitFor((r) => /mem_allocator:[^\r]*\r\n/.test(r));
  } finally {
    c.close();
  }
}

test("serve runs with a 1 s allocator purge delay, in the same process, with its own arguments", async () => {
  const k = await startKv(["--maxclients", "77"], { env: { MIMALLOC_ALLOW_THP: undefined, MIMALLOC_PURGE_DELAY: undefined, KV_ALLOCATOR: undefined } });
  running.push(k);
  // The pid the log prints is the one that was spawned: execve kept it.
  expect(k.output()).toContain(`pid ${k.proc.pid})`);
  expect(k.output()).toContain(`(data dir ${k.dataDir},`);
  const env = environOf(k.proc.pid);
  expect(env.get("MIMALLOC_PURGE_DELAY")).toBe("1000");
  expect(env.has("MIMALLOC_ALLOW_THP")).toBe(false);
  expect(await infoMemory(k.port)).toContain("mem_allocator:mimalloc(purge_delay=1000)\r\n");
  // Arguments survived the re-exec.
  const c = await rawConnect(k.port);
  c.write("CONFIG GET maxclients\r\n");
  expect(await c.waitFor((r) => r.includes("77\r\n"))).toContain("maxclients");
  c.close();
});

test("a user's own MIMALLOC_PURGE_DELAY wins; KV_ALLOCATOR=default leaves the allocator alone", async () => {
  const own = await startKv([], { env: { MIMALLOC_PURGE_DELAY: "250", MIMALLOC_ALLOW_THP: undefined, KV_ALLOCATOR: undefined } });
  running.push(own);
  const env = environOf(own.proc.pid);
  expect(env.get("MIMALLOC_PURGE_DELAY")).toBe("250");
  expect(env.get("KV_ALLOCATOR")).toBeUndefined(); // nothing was missing: no re-exec
  expect(await infoMemory(own.port)).toContain("mem_allocator:mimalloc(purge_delay=250)\r\n");

  const plain = await startKv([], { env: { KV_ALLOCATOR: "default", MIMALLOC_PURGE_DELAY: undefined, MIMALLOC_ALLOW_THP: undefined } });
  running.push(plain);
  const env2 = environOf(plain.proc.pid);
  expect(env2.has("MIMALLOC_PURGE_DELAY")).toBe(false);
  expect(await infoMemory(plain.port)).toContain("mem_allocator:mimalloc(purge_delay=default)\r\n");
});

test("under `bun src/main.ts serve` the re-exec keeps the script and the arguments too", async () => {
  const dir = mkdtempSync(join(tmpdir(), "kv-alloc-"));
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1", KV_ALLOCATOR: undefined, MIMALLOC_PURGE_DELAY: undefined };
  const proc = Bun.spawn([process.execPath, join(ROOT, "src/main.ts"), "serve", "--port", "0", "--data-dir", dir, "--maxclients", "33"], { cwd: ROOT, env, stdout: "pipe", stderr: "pipe" });
  try {
    let text = "";
    const dec = new TextDecoder();
    void (async () => {
      for await (const c of proc.stdout) text += dec.decode(c, { stream: true });
    })();
    void (async () => {
      for await (const c of proc.stderr) text += dec.decode(c, { stream: true });
    })();
    let port = 0;
    for (const deadline = Date.now() + 15_000; Date.now() < deadline && port === 0 && proc.exitCode === null; await Bun.sleep(20)) {
      port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(text)?.[1] ?? 0);
    }
    expect(port).toBeGreaterThan(0);
    expect(text).toContain(`pid ${proc.pid})`);
    expect(environOf(proc.pid).get("MIMALLOC_PURGE_DELAY")).toBe("1000");
    expect(await infoMemory(port)).toContain("mem_allocator:mimalloc(purge_delay=1000)\r\n");
    const c = await rawConnect(port);
    c.write("CONFIG GET maxclients\r\n");
    expect(await c.waitFor((r) => r.includes("33\r\n"))).toContain("maxclients");
    c.close();
  } finally {
    proc.kill();
    await proc.exited;
    rmSync(dir, { recursive: true, force: true });
  }
});
