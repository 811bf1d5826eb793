// Stands in for `kv serve` in tests of process discovery: takes the data dir's LOCK as kv does,
// prints "ready", and waits. `--ignore-term` makes it ignore SIGTERM (a node stuck in shutdown).
// Run as: bun tests/cli/_fake-node.ts serve --data-dir DIR [--ignore-term]
import { mkdirSync } from "node:fs";
import { lockDataDir } from "../../src/storage/lock.ts";

const argv = process.argv.slice(2);
const dir = argv[argv.indexOf("--data-dir") + 1]!;
mkdirSync(dir, { recursive: true });
const lock = lockDataDir(dir);
process.on("SIGTERM", () => {
  if (argv.includes("--ignore-term")) return;
  lock.release();
  process.exit(0);
});
process.stdout.write("ready\n");
setInterval(() => {}, 1000);
