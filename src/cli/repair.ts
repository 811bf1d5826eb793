// `kv repair`: cut a damaged write-ahead log at its first bad record and say exactly what was dropped.
import { type ArgsDef, defineCommand } from "citty";
import { refuseBadArgs } from "./strict.ts";
import { repairWal } from "../storage/index.ts";

const repairArgs = {
  "data-dir": { type: "string", description: "The node's data directory", required: true },
} as const satisfies ArgsDef;

export default defineCommand({
  meta: { name: "repair", description: "Cut a damaged log at its first bad record (run on a stopped node)" },
  args: repairArgs,
  run({ args, rawArgs }) {
    refuseBadArgs(rawArgs, repairArgs);
    // A DataDirError (missing, locked or unreadable dir) is reported by src/cli/fatal.ts.
    const report = repairWal(args["data-dir"]);
    for (const line of report.lines) console.log(line);
  },
});
