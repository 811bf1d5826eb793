// Client subcommands (get, set, del, ...). Filled in by the client-library work (issue 4).
import type { CommandDef } from "citty";

export const clientCommands: Record<string, CommandDef<any>> = {};
