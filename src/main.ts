// Compile entry for the single `kv` binary: server, client and local-cluster launcher.
import { runMain } from "citty";
import { main } from "./cli/index.ts";

await runMain(main);
