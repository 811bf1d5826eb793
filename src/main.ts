// Compile entry for the single `kv` binary: server, client and local-cluster launcher.
import "./preflight.ts"; // first: may re-execute `kv serve` before anything else loads
import { type CommandDef, renderUsage, runCommand } from "citty";
import { main } from "./cli/index.ts";
import { exitWithFailure, installFailureHandlers } from "./cli/fatal.ts";
import { forStream } from "./log.ts";

// citty's runMain would print an error it does not know with the runtime's formatter (the
// bundle's source around the throw) and its usage in colour even when piped: this is runMain
// with every failure sent to one report (src/cli/fatal.ts).
const rawArgs = process.argv.slice(2);
installFailureHandlers(rawArgs);
// A reader that closed our stdout (`kv cluster restart | head -1`) must not stop the work under
// way (a rolling restart left half done): what is written after that is dropped.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code !== "EPIPE") exitWithFailure(e, rawArgs);
});

/** The (sub)subcommand the command line names (for its usage), and its parent. */
async function resolveCommand(args: readonly string[]): Promise<[CommandDef<any>, CommandDef<any> | undefined]> {
  let cmd: CommandDef<any> = main;
  let parent: CommandDef<any> | undefined;
  let rest = args;
  for (;;) {
    // A subcommand is given as its definition or as a function that loads it.
    const subs = cmd.subCommands as Record<string, CommandDef<any> | (() => Promise<CommandDef<any>>)> | undefined;
    const at = rest.findIndex((a) => !a.startsWith("-"));
    const sub = subs === undefined || at < 0 || !Object.hasOwn(subs, rest[at]!) ? undefined : subs[rest[at]!];
    if (sub === undefined) return [cmd, parent];
    // Usage names a command by its parent's name and its own: `kv cluster up`, not `cluster up`.
    const parentName = parent === undefined ? "" : `${(parent.meta as { name: string }).name} `;
    parent = { ...cmd, meta: { ...(cmd.meta as object), name: `${parentName}${(cmd.meta as { name: string }).name}` } };
    cmd = typeof sub === "function" ? await sub() : sub;
    rest = rest.slice(at + 1);
  }
}

async function printUsage(to: NodeJS.WriteStream): Promise<void> {
  const [cmd, parent] = await resolveCommand(rawArgs);
  to.write(forStream((await renderUsage(cmd, parent)) + "\n\n", to));
}

try {
  if (rawArgs.includes("--help") || rawArgs.includes("-h")) {
    await printUsage(process.stdout);
  } else if (rawArgs.length === 1 && rawArgs[0] === "--version") {
    process.stdout.write(`${(main.meta as { version: string }).version}\n`);
  } else {
    await runCommand(main, { rawArgs });
  }
} catch (e) {
  // No subcommand, or one that does not exist: the list of subcommands is the useful answer.
  const code = (e as { code?: string }).code;
  if (code === "E_NO_COMMAND" || code === "E_UNKNOWN_COMMAND") await printUsage(process.stdout);
  exitWithFailure(e, rawArgs);
}
