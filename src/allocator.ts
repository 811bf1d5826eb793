// Memory settings for `kv serve`. Bun allocates with mimalloc, and JavaScriptCore reads its
// options (BUN_JSC_*) from the environment; both read them once, at process start. kv sets them
// by re-executing itself (same PID, same arguments) before anything else loads
// (src/preflight.ts); see docs/decisions.md, "Allocator settings" and "GC heap settings".
//
// - MIMALLOC_PURGE_DELAY=1000: memory freed by the GC goes back to the kernel after 1 s unused
//   instead of 100 ms, so a server under steady load reuses its pages instead of faulting them
//   in again (a page fault costs ~10 us on this VM). Measured with bench-redis.ts: server CPU
//   per SET at -P 16 6.8 -> 4.7 us, per GET 3.4 -> 2.8 us; after 30 s idle the memory is back.
// - BUN_JSC_useWarmUpMarkedBlocks=0 and BUN_JSC_decommitUnusedMarkedBlockPages=0: the GC
//   heap's blocks are neither pre-touched by a background thread ("JSCWarmUp") nor have their
//   unused pages handed back to the kernel after each collection, to be faulted in again on
//   the next allocation. Page faults per SET halved; CPU per SET at -P 1 about 9 % lower
//   (median of 8 interleaved pairs, 22.6 -> 20.6 us); RSS with 1M keys after 30 s idle the same.
// - Transparent huge pages (MIMALLOC_ALLOW_THP=1) were measured and rejected: they made a 1M-key
//   restart about 1.5x faster but steady load 20-45 % costlier (huge pages split on every purge).
//
// A user's own values of these variables win. KV_ALLOCATOR=default (any value of KV_ALLOCATOR) skips
// all of this; the re-executed process has KV_ALLOCATOR=tuned.

/** The options kv sets, with their values. */
export const ALLOCATOR_ENV: Readonly<Record<string, string>> = {
  MIMALLOC_PURGE_DELAY: "1000",
  BUN_JSC_useWarmUpMarkedBlocks: "0",
  BUN_JSC_decommitUnusedMarkedBlockPages: "0",
};

/** Set in the re-executed process, so it does not re-execute again. */
const MARK = "KV_ALLOCATOR";

/**
 * For `kv serve`: when any option in ALLOCATOR_ENV is missing from the environment, re-executes
 * this process with them set. Returns only when no re-exec is needed or possible.
 */
export function applyAllocatorSettings(): void {
  const env = process.env;
  if (env[MARK] !== undefined) return; // already done, or "default": the user opted out
  const missing = Object.keys(ALLOCATOR_ENV).filter((k) => env[k] === undefined);
  if (missing.length === 0) return;
  const execve = (process as { execve?: (file: string, args: string[], env: Record<string, string | undefined>) => never }).execve;
  if (typeof execve !== "function") return;
  // A compiled binary's argv is ["bun", "/$bunfs/root/kv", ...args]; under `bun src/main.ts` it
  // is [bun, script, ...args]. Either way the new process must see the same args.
  // Under bun, its own flags (--smol, --preload, ...) come back from process.execArgv.
  const compiled = Bun.main.startsWith("/$bunfs/");
  const args = compiled ? [process.execPath, ...process.argv.slice(2)] : [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
  const next: Record<string, string | undefined> = { ...env, [MARK]: "tuned" };
  for (const k of missing) next[k] = ALLOCATOR_ENV[k];
  try {
    execve.call(process, process.execPath, args, next);
  } catch (e) {
    // Still this process: serve with the allocator's defaults rather than not at all. (No
    // logger here: this runs before the program's modules load; see preflight.ts.)
    console.warn(`could not re-execute with ${missing.map((k) => `${k}=${ALLOCATOR_ENV[k]}`).join(" ")} (${(e as Error).message}); using the allocator's defaults`);
  }
}

/** What INFO memory reports as mem_allocator: the mimalloc options in effect for this process. */
export function allocatorDescription(): string {
  const env = process.env;
  const opts = Object.keys(ALLOCATOR_ENV)
    .filter((k) => k.startsWith("MIMALLOC_"))
    .map((k) => `${k.replace("MIMALLOC_", "").toLowerCase()}=${env[k] ?? "default"}`)
    .join(",");
  return `mimalloc(${opts})`;
}

/** What INFO memory reports as kv_gc_heap: the JavaScriptCore heap options kv sets, as in effect. */
export function gcHeapDescription(): string {
  const env = process.env;
  return Object.keys(ALLOCATOR_ENV)
    .filter((k) => k.startsWith("BUN_JSC_"))
    .map((k) => `${k.replace("BUN_JSC_", "")}=${env[k] ?? "default"}`)
    .join(",");
}
