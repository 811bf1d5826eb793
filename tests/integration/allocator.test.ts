// `kv serve` re-executes itself with mimalloc's purge delay and two JavaScriptCore heap options set
// (src/allocator.ts): same PID, same arguments, the options in its environment and reported by
// INFO; a user's own values win.
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
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

/** The variables kv sets, unset: each test says what the server starts with. */
const UNSET = {
  KV_ALLOCATOR: undefined,
  MIMALLOC_PURGE_DELAY: undefined,
  MIMALLOC_ALLOW_THP: undefined,
  BUN_JSC_useWarmUpMarkedBlocks: undefined,
  BUN_JSC_decommitUnusedMarkedBlockPages: undefined,
};

function threadNames(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map((t) => readFileSync(`/proc/${pid}/task/${t}/comm`, "latin1").trim());
}

async function infoMemory(port: number): Promise<string> {
  const c = await rawConnect(port);
  try {
    c.write("INFO memory\r\n");
    return await c.waitFor((r) => /kv_gc_heap:[^\r]*\r\n/.test(r));
  } finally {
    c.close();
  }
}

test("serve runs with a 1 s allocator purge delay and no GC block warm-up or page decommit, in the same process, with its own arguments", async () => {
  const k = await startKv(["--maxclients", "77"], { env: UNSET });
  running.push(k);
  // The pid the log prints is the one that was spawned: execve kept it.
  expect(k.output()).toContain(`pid ${k.proc.pid})`);
  expect(k.output()).toContain(`(data dir ${k.dataDir},`);
  const env = environOf(k.proc.pid);
  expect(env.get("MIMALLOC_PURGE_DELAY")).toBe("1000");
  expect(env.get("BUN_JSC_useWarmUpMarkedBlocks")).toBe("0");
  expect(env.get("BUN_JSC_decommitUnusedMarkedBlockPages")).toBe("0");
  expect(env.get("KV_ALLOCATOR")).toBe("tuned");
  expect(env.has("MIMALLOC_ALLOW_THP")).toBe(false);
  const info = await infoMemory(k.port);
  expect(info).toContain("mem_allocator:mimalloc(purge_delay=1000)\r\n");
  expect(info).toContain("kv_gc_heap:useWarmUpMarkedBlocks=0,decommitUnusedMarkedBlockPages=0\r\n");
  // JavaScriptCore took the option: with warm-up on, a server that has allocated some blocks
  // runs a thread named JSCWarmUp; with it off there is none (checked after a burst of writes).
  const c0 = await rawConnect(k.port);
  const burst = Array.from({ length: 2000 }, (_, i) => `SET k${i} ${"v".repeat(200)}\r\n`).join("");
  c0.write(burst);
  await c0.waitFor((r) => r.split("+OK").length > 2000);
  c0.close();
  expect(threadNames(k.proc.pid)).not.toContain("JSCWarmUp");
  // Arguments survived the re-exec.
  const c = await rawConnect(k.port);
  c.write("CONFIG GET maxclients\r\n");
  expect(await c.waitFor((r) => r.includes("77\r\n"))).toContain("maxclients");
  c.close();
});

test("a user's own values win; KV_ALLOCATOR=default leaves the allocator and the GC heap alone", async () => {
  // One of the options given: the others are filled in, the given one kept.
  const own = await startKv([], { env: { ...UNSET, MIMALLOC_PURGE_DELAY: "250", BUN_JSC_useWarmUpMarkedBlocks: "1" } });
  running.push(own);
  const env = environOf(own.proc.pid);
  expect(env.get("MIMALLOC_PURGE_DELAY")).toBe("250");
  expect(env.get("BUN_JSC_useWarmUpMarkedBlocks")).toBe("1");
  expect(env.get("BUN_JSC_decommitUnusedMarkedBlockPages")).toBe("0");
  expect(env.get("KV_ALLOCATOR")).toBe("tuned");
  const info = await infoMemory(own.port);
  expect(info).toContain("mem_allocator:mimalloc(purge_delay=250)\r\n");
  expect(info).toContain("kv_gc_heap:useWarmUpMarkedBlocks=1,decommitUnusedMarkedBlockPages=0\r\n");

  // All of them given: nothing missing, no re-exec.
  const all = await startKv([], { env: { ...UNSET, MIMALLOC_PURGE_DELAY: "300", BUN_JSC_useWarmUpMarkedBlocks: "0", BUN_JSC_decommitUnusedMarkedBlockPages: "1" } });
  running.push(all);
  const env3 = environOf(all.proc.pid);
  expect(env3.get("KV_ALLOCATOR")).toBeUndefined();
  expect(env3.get("BUN_JSC_decommitUnusedMarkedBlockPages")).toBe("1");

  const plain = await startKv([], { env: { ...UNSET, KV_ALLOCATOR: "default" } });
  running.push(plain);
  const env2 = environOf(plain.proc.pid);
  expect(env2.has("MIMALLOC_PURGE_DELAY")).toBe(false);
  expect(env2.has("BUN_JSC_useWarmUpMarkedBlocks")).toBe(false);
  const info2 = await infoMemory(plain.port);
  expect(info2).toContain("mem_allocator:mimalloc(purge_delay=default)\r\n");
  expect(info2).toContain("kv_gc_heap:useWarmUpMarkedBlocks=default,decommitUnusedMarkedBlockPages=default\r\n");
});

test("under `bun src/main.ts serve` the re-exec keeps the script and the arguments too", async () => {
  const dir = mkdtempSync(join(tmpdir(), "kv-alloc-"));
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1", ...UNSET };
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
    expect(environOf(proc.pid).get("BUN_JSC_useWarmUpMarkedBlocks")).toBe("0");
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
