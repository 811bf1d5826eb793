// `kv repair`: cut a damaged write-ahead log at its first bad record and say exactly what was dropped.
import { type ArgsDef, defineCommand } from "citty";
import { log } from "../log.ts";
import { exitOnBadArgs } from "./strict.ts";
import { DataDirError, repairWal } from "../storage/index.ts";

const repairArgs = {
  "data-dir": { type: "string", description: "The node's data directory", required: true },
} as const satisfies ArgsDef;

export default defineCommand({
  meta: { name: "repair", description: "Cut a damaged log at its first bad record (run on a stopped node)" },
  args: repairArgs,
  run({ args, rawArgs }) {
    exitOnBadArgs(rawArgs, repairArgs, "repair");
    try {
      const report = repairWal(args["data-dir"]);
      for (const line of report.lines) console.log(line);
    } catch (e) {
      if (e instanceof DataDirError) {
        log.error(e.message);
        process.exit(1);
      }
      throw e;
    }
  },
});
