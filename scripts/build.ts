// Builds the single executable ./kv with bun build --compile.
// Flags: --bytecode needs --format=esm (consola uses import.meta; CJS bytecode builds exit 0 but crash at start).
import { $ } from "bun";

const root = new URL("..", import.meta.url).pathname;
const started = performance.now();
await $`bun build --compile --minify --bytecode --format=esm --no-compile-autoload-dotenv --no-compile-autoload-bunfig ${root}src/main.ts --outfile ${root}kv`.quiet();
console.log(`built ./kv in ${Math.round(performance.now() - started)} ms`);
