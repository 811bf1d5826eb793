// The one place that imports the logger: tagged consola instances for each layer.
import { createConsola, type ConsolaInstance, LogLevels } from "consola";

export type LogLevelName = "silent" | "error" | "warn" | "info" | "debug" | "trace";

const root: ConsolaInstance = createConsola({ level: LogLevels.info });
// consola's withTag copies the level at creation, so children made at import time must be
// updated when the level changes later (from --log-level).
const children: ConsolaInstance[] = [];

export function setLogLevel(name: LogLevelName): void {
  root.level = LogLevels[name];
  for (const c of children) c.level = root.level;
}

export function logger(tag: string): ConsolaInstance {
  const child = root.withTag(tag);
  children.push(child);
  return child;
}

export const log = root;
