// Compile entry for the single `kv` binary: server, client and local-cluster launcher.
import "./preflight.ts"; // first: may re-execute `kv serve` before anything else loads
import { runMain } from "citty";
import { main } from "./cli/index.ts";

await runMain(main);
