// Architecture rule: the pure cores (RESP codec, KV state machine, Raft) do no I/O and read no
// clock or global randomness. Time arrives as arguments/ticks, randomness as a seeded source.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync, existsSync } from "node:fs";
import { join, relative } from "node:path";

const ROOT = join(import.meta.dir, "..");
const PURE_DIRS = ["src/resp", "src/kv", "src/raft"];

const FORBIDDEN: [RegExp, string][] = [
  [/\bfrom\s+["'](bun|bun:[\w-]+)["']/, "imports bun"],
  [/\bfrom\s+["']node:[\w/]+["']/, "imports node:*"],
  [/\bfrom\s+["'](fs|net|os|path|child_process|crypto|timers|worker_threads|http|https|dgram|dns|tls)["']/, "imports a Node built-in"],
  [/\bimport\s*\(\s*["'](bun|node:)/, "dynamic import of bun/node"],
  [/\brequire\s*\(/, "calls require()"],
  [/\b(setTimeout|setInterval|setImmediate|clearTimeout|clearInterval)\s*\(/, "uses a timer"],
  [/\bDate\.now\s*\(/, "reads the clock (Date.now)"],
  [/\bnew\s+Date\s*\(\s*\)/, "reads the clock (new Date())"],
  [/\bperformance\.now\s*\(/, "reads the clock (performance.now)"],
  [/\bprocess\.hrtime/, "reads the clock (process.hrtime)"],
  [/\bMath\.random\s*\(/, "uses global randomness (Math.random)"],
  [/\bcrypto\.(getRandomValues|randomUUID)/, "uses global randomness (crypto)"],
  [/\bBun\./, "uses the Bun global"],
  [/\bprocess\./, "uses the process global"],
  [/\bfetch\s*\(/, "does network I/O (fetch)"],
];

/** Removes comments and string contents so that prose about Date.now() does not trip the rule. */
export function stripCommentsAndStrings(src: string): string {
  return src
    .replace(/\/\*[\s\S]*?\*\//g, " ")
    .replace(/(^|[^:\\])\/\/.*$/gm, "$1")
    .replace(/`(?:\\[\s\S]|[^`\\])*`/g, "``");
}

export function violations(src: string): string[] {
  // Imports are checked on the raw text (their module names are strings); calls on stripped text.
  const found: string[] = [];
  const code = stripCommentsAndStrings(src);
  for (const [re, what] of FORBIDDEN) {
    const text = re.source.includes("from") || re.source.includes("import") ? src.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/^\s*\/\/.*$/gm, "") : code;
    if (re.test(text)) found.push(what);
  }
  return found;
}

function tsFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

describe("pure cores", () => {
  test("the checker catches each forbidden form (it can fail)", () => {
    expect(violations(`import { x } from "bun";`)).toContain("imports bun");
    expect(violations(`import { readFileSync } from "node:fs";`)).toContain("imports node:*");
    expect(violations(`import fs from "fs";`)).toContain("imports a Node built-in");
    expect(violations(`const t = Date.now();`)).toContain("reads the clock (Date.now)");
    expect(violations(`const r = Math.random();`)).toContain("uses global randomness (Math.random)");
    expect(violations(`setTimeout(() => {}, 1);`)).toContain("uses a timer");
    expect(violations(`const d = new Date();`)).toContain("reads the clock (new Date())");
    expect(violations(`const t = performance.now();`)).toContain("reads the clock (performance.now)");
    expect(violations(`Bun.write("x", "y");`)).toContain("uses the Bun global");
    // Prose in comments is fine.
    expect(violations(`// never call Date.now() here\n/* or Math.random() */\nconst x = 1;`)).toEqual([]);
  });

  for (const dir of PURE_DIRS) {
    test(`${dir} imports no bun/node:* and uses no timers, clock or global randomness`, () => {
      const files = tsFiles(join(ROOT, dir));
      const bad: string[] = [];
      for (const f of files) {
        for (const v of violations(readFileSync(f, "utf8"))) bad.push(`${relative(ROOT, f)}: ${v}`);
      }
      expect(bad).toEqual([]);
    });
  }

  test("the pure directories exist and hold code (the rule is not vacuous)", () => {
    expect(tsFiles(join(ROOT, "src/resp")).length).toBeGreaterThan(0);
    expect(tsFiles(join(ROOT, "src/kv")).length).toBeGreaterThan(0);
  });
});
