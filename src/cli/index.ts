// The root citty command: every subcommand with a one-line description.
import { defineCommand } from "citty";
import pkg from "../../package.json" with { type: "json" };
import { clientCommands } from "./client-commands.ts";

export const main = defineCommand({
  meta: { name: "kv", version: pkg.version, description: "A Raft key-value store that speaks the Redis protocol" },
  subCommands: {
    serve: () => import("./serve.ts").then((m) => m.default),
    repair: () => import("./repair.ts").then((m) => m.default),
    cluster: () => import("./cluster.ts").then((m) => m.default),
    backup: () => import("./backup.ts").then((m) => m.backup),
    restore: () => import("./backup.ts").then((m) => m.restore),
    ...clientCommands,
  },
});
