// Evaluated before the rest of the program (main.ts imports it first): `kv serve` re-executes
// itself here with the allocator's options set (src/allocator.ts), before citty, consola and the
// server's modules load, so the first process costs as little as possible.
import { applyAllocatorSettings } from "./allocator.ts";

// argv is [bun, script or /$bunfs/root/kv, ...args] both compiled and under `bun src/main.ts`.
if (process.argv[2] === "serve") applyAllocatorSettings();
