// Flags citty does not know are otherwise dropped without a word, so `kv serve --fsycn no` would
// run with the default and `kv set k v --exx 60` would set a key with no TTL. Every command
// checks its command line against its definition first.
import type { ArgsDef } from "citty";
import { ConfigError } from "../errors.ts";

/**
 * What is wrong with `rawArgs` for a command with these args, or null. Words that are not flags
 * or flag values are allowed only when the command takes positional arguments.
 */
export function checkArgs(rawArgs: readonly string[], def: ArgsDef): string | null {
  const byName = new Map<string, { type?: string }>();
  const positionals = Object.values(def).some((a) => (a as { type?: string }).type === "positional");
  for (const [name, a] of Object.entries(def)) {
    if ((a as { type?: string }).type === "positional") continue;
    byName.set(name, a as { type?: string });
    const alias = (a as { alias?: string | string[] }).alias;
    for (const al of alias === undefined ? [] : Array.isArray(alias) ? alias : [alias]) byName.set(al, a as { type?: string });
  }
  for (let i = 0; i < rawArgs.length; i++) {
    const t = rawArgs[i]!;
    if (t === "--") return rawArgs.length > i + 1 && !positionals ? `unexpected argument: ${rawArgs[i + 1]}` : null;
    if (!t.startsWith("-") || t === "-") {
      if (positionals) continue;
      return `unexpected argument: ${t}`;
    }
    const body = t.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    if (name === "help" || name === "h") continue;
    const a = byName.get(name) ?? (name.startsWith("no-") && byName.get(name.slice(3))?.type === "boolean" ? { type: "boolean" } : undefined);
    if (a === undefined) {
      const hint = positionals ? " (a value that begins with a dash goes after --)" : "";
      return `unknown option: ${t.slice(0, eq < 0 ? undefined : t.length - body.length + eq)}${hint}`;
    }
    if (a.type !== "boolean" && eq < 0) i++; // its value
  }
  return null;
}

/** For serve and repair: throws ConfigError saying what is wrong with the command line (src/cli/fatal.ts reports it). */
export function refuseBadArgs(rawArgs: readonly string[], def: ArgsDef): void {
  const bad = checkArgs(rawArgs, def);
  if (bad !== null) throw new ConfigError(bad);
}
