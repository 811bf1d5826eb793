// Long RESP fuzz runs: `bun scripts/fuzz.ts [seconds] [seed]` runs the fuzz test file with
// FUZZ_SECONDS (each layer that long; default 600) and SEED set; a failure prints its seed.
// Builds ./kv first, as the socket layer starts the binary.
const seconds = Number(process.argv[2] ?? 600);
const seed = process.argv[3] ?? String(Math.floor(Math.random() * 2 ** 31));
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error("usage: bun scripts/fuzz.ts [seconds] [seed]");
  process.exit(2);
}
const build = Bun.spawnSync([process.execPath, "scripts/build.ts"], { stdout: "inherit", stderr: "inherit" });
if (build.exitCode !== 0) process.exit(build.exitCode ?? 1);
console.log(`fuzzing for ${seconds} s per layer, SEED=${seed}`);
const run = Bun.spawn([process.execPath, "test", "--timeout", String((seconds + 180) * 1000), "tests/fuzz/resp-fuzz.test.ts"], {
  env: { ...process.env, FUZZ_SECONDS: String(seconds), SEED: seed },
  stdout: "inherit",
  stderr: "inherit",
});
process.exit(await run.exited);
export {};
