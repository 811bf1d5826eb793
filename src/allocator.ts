// Allocator settings for `kv serve`. Bun allocates with mimalloc, which reads its options from
// the environment once, at process start. kv sets two of them by re-executing itself (same PID,
// same arguments) before anything else runs; see docs/decisions.md, "Allocator settings".
//
// - MIMALLOC_ALLOW_THP=1: mimalloc's arenas may use transparent huge pages (where the kernel's
//   THP mode is "madvise"). On this VM a 4 KiB page fault costs ~10 us; loading 1M keys took
//   ~100k of them and 2.3 s, against ~2k and 0.9 s with huge pages.
// - MIMALLOC_PURGE_DELAY=1000: memory freed by the GC is returned to the OS after 1 s unused
//   instead of 100 ms, so a burst of garbage (a WAL replay) reuses pages instead of faulting them
//   in again. Replay of 600k log records: 3.0 s -> 1.8 s with huge pages.
//
// A user's own MIMALLOC_* values win. KV_ALLOCATOR=default skips all of this.

/** The options kv sets, with their values. */
export const ALLOCATOR_ENV: Readonly<Record<string, string>> = {
  MIMALLOC_ALLOW_THP: "1",
  MIMALLOC_PURGE_DELAY: "1000",
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
  const compiled = Bun.main.startsWith("/$bunfs/");
  const args = compiled ? [process.execPath, ...process.argv.slice(2)] : [process.execPath, ...process.argv.slice(1)];
  const next: Record<string, string | undefined> = { ...env, [MARK]: "tuned" };
  for (const k of missing) next[k] = ALLOCATOR_ENV[k];
  execve.call(process, process.execPath, args, next);
}

/** What INFO memory reports as mem_allocator: the mimalloc options in effect for this process. */
export function allocatorDescription(): string {
  const env = process.env;
  const opts = Object.keys(ALLOCATOR_ENV)
    .map((k) => `${k.replace("MIMALLOC_", "").toLowerCase()}=${env[k] ?? "default"}`)
    .join(",");
  return `mimalloc(${opts})`;
}
