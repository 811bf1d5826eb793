// `kv repair`: cut a damaged write-ahead log at its first bad record and say exactly what was dropped.
import { defineCommand } from "citty";
import { log } from "../log.ts";
import { DataDirError, repairWal } from "../storage/index.ts";

export default defineCommand({
  meta: { name: "repair", description: "Cut a damaged log at its first bad record (run on a stopped node)" },
  args: {
    "data-dir": { type: "string", description: "The node's data directory", required: true },
  },
  run({ args }) {
    try {
      const report = repairWal(args["data-dir"]);
      for (const line of report.lines) console.log(line);
      if (report.clean) console.log(`log in ${args["data-dir"]} is clean: nothing changed`);
      else console.log(`dropped ${report.bytesDropped} bytes (${report.validRecordsDropped} records with good checksums); the log now ends at index ${report.lastIndexKept}`);
    } catch (e) {
      if (e instanceof DataDirError) {
        log.error(e.message);
        process.exit(1);
      }
      throw e;
    }
  },
});
