import { bulkLoad, procRssBytes, sleep, freePort } from "./bench-lib.ts";
import { mkdtempSync, rmSync } from "node:fs";
const variants = process.argv.slice(2);
for (const v of variants) {
  const env: Record<string, string> = { ...process.env } as any;
  for (const kv of v.split(";").filter((x) => x.includes("="))) { const [k, val] = kv.split("="); env[k!] = val!; }
  const port = await freePort();
  const dir = mkdtempSync("/tmp/pf/mem.");
  const p = Bun.spawn(["/work/main/kv", "serve", "--port", String(port), "--data-dir", dir, "--fsync", "no", "--log-level", "warn"], { env, stdout: "ignore", stderr: "inherit" });
  for (let i = 0; i < 100; i++) { try { const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }); s.end(); break; } catch { await sleep(100); } }
  const { ms } = await bulkLoad(port, 1_000_000, 100, { timeoutMs: 300_000 });
  let rss = procRssBytes(p.pid);
  for (let i = 0; i < 15; i++) { await sleep(2000); const n = procRssBytes(p.pid); const ok = Math.abs(n - rss) < rss * 0.01; rss = n; if (ok) break; }
  console.log(`${v}: load ${ms.toFixed(0)} ms, RSS ${(rss / 2 ** 20).toFixed(1)} MiB`);
  p.kill(); await p.exited; rmSync(dir, { recursive: true, force: true });
}
