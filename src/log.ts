// The one place that imports the logger: tagged consola instances for each layer.
import { createConsola, type ConsolaInstance, LogLevels } from "consola";

export type LogLevelName = "silent" | "error" | "warn" | "info" | "debug" | "trace";

const root: ConsolaInstance = createConsola({ level: LogLevels.info });
// consola's withTag copies the level at creation, so children made at import time must be
// updated when the level changes later (from --log-level).
// One child per tag, made on first use: callers that ask per message (storage does) must not
// add an instance (~4.6 KB, kept here for good) per log line.
const children = new Map<string, ConsolaInstance>();

export function setLogLevel(name: LogLevelName): void {
  root.level = LogLevels[name];
  for (const c of children.values()) c.level = root.level;
}

export function logger(tag: string): ConsolaInstance {
  let child = children.get(tag);
  if (child === undefined) children.set(tag, (child = root.withTag(tag)));
  return child;
}

export const log = root;
