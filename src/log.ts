// The one place that imports the logger: tagged consola instances for each layer.
import { createConsola, type ConsolaInstance, LogLevels } from "consola";

export type LogLevelName = "silent" | "error" | "warn" | "info" | "debug" | "trace";

const root: ConsolaInstance = createConsola({ level: LogLevels.info });

export function setLogLevel(name: LogLevelName): void {
  root.level = LogLevels[name === "silent" ? "silent" : name];
}

export function logger(tag: string): ConsolaInstance {
  return root.withTag(tag);
}

export const log = root;
