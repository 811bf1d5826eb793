import { bulkLoad, freePort, sleep } from "./bench-lib.ts";
import { mkdtempSync } from "node:fs";
const dir = process.argv[2] ?? mkdtempSync("/tmp/pf/load.");
const port = await freePort();
const p = Bun.spawn(["/work/main/kv", "serve", "--port", String(port), "--data-dir", dir, "--fsync", "no", "--log-level", "warn"], { stdout: "ignore", stderr: "inherit" });
for (let i = 0; i < 100; i++) { try { const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }); s.end(); break; } catch { await sleep(100); } }
await bulkLoad(port, 1_000_000, 100, { timeoutMs: 300_000 });
if (!process.env.NOSAVE) { const r = Bun.spawnSync(["redis-cli", "-p", String(port), "SAVE"]); console.log(r.stdout.toString()); }
p.kill(); await p.exited; console.log(dir);
