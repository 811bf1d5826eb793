// `kv serve`'s authentication flags (--requirepass, --aclfile, --protected-mode, --masteruser,
// --masterauth): their definitions, and the users and link credentials they give a node.
import { readFileSync } from "node:fs";
import type { ServerConfig } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { AclRuleError, AclState, describeUser, defaultUser } from "../kv/acl.ts";
import { ACL_FILE_BYTES_MAX, parseAclFile, sha256Hex } from "../server/acl.ts";
import { ACL_CATEGORY_NAMES } from "../server/acl-categories.ts";
import { ALL_COMMANDS } from "../server/dispatch.ts";

export const authArgs = {
  requirepass: { type: "string", description: "Password of the default user: clients must AUTH (env KV_REQUIREPASS keeps it out of the process list; shown nowhere, CONFIG GET gives its SHA-256)" },
  aclfile: { type: "string", description: "ACL users in Redis's ACL file syntax (user alice on >pw ~app:* +@read), read at start and by ACL LOAD, written by ACL SAVE" },
  "protected-mode": { type: "enum", options: ["yes", "no"] as string[], description: "With no password for the default user, serve only loopback clients (Redis's protected mode)", default: "yes" },
  masteruser: { type: "string", description: "User this node's links to the leader's client port authenticate as (default: default)" },
  masterauth: { type: "string", description: "Password of --masteruser for links to the leader (default: --requirepass)" },
} as const;

/** Reads the authentication flags into the config. */
export function authConfig(args: Record<string, unknown>, config: ServerConfig): void {
  const str = (k: string) => (args[k] === undefined ? undefined : String(args[k]));
  // From the environment too: a value there is not in the process list, as a flag's is.
  config.requirepass = str("requirepass") ?? process.env.KV_REQUIREPASS;
  config.aclFile = str("aclfile");
  config.protectedMode = args["protected-mode"] !== "no";
  config.masterUser = str("masteruser");
  config.masterAuth = str("masterauth") ?? process.env.KV_MASTERAUTH;
  if (config.requirepass !== undefined && config.aclFile !== undefined) {
    throw new ConfigError("--requirepass and --aclfile do not go together: give the default user its password in the ACL file (user default on >password ~* &* +@all)");
  }
  if (config.requirepass === "") throw new ConfigError("--requirepass: an empty password (omit the flag for none)");
}

const TABLE_NAMES = new Set(ALL_COMMANDS.flatMap((c) => [c.fullName, ...c.subcommands.map((s) => s.fullName)]));
const CATEGORIES = new Set(ACL_CATEGORY_NAMES);
export const ACL_NAMES = { isCommand: (n: string) => TABLE_NAMES.has(n), isCategory: (n: string) => CATEGORIES.has(n) };

/** The users the flags give (`user ...` lines, passwords hashed), or undefined for the lone password-less default. */
export function configuredUsers(config: ServerConfig): string[] | undefined {
  if (config.requirepass !== undefined) return [describeUser(defaultUser(sha256Hex(config.requirepass)))];
  if (config.aclFile === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(config.aclFile, "latin1");
  } catch (e) {
    throw new ConfigError(`--aclfile ${config.aclFile}: ${(e as Error).message}`);
  }
  if (text.length > ACL_FILE_BYTES_MAX) throw new ConfigError(`--aclfile ${config.aclFile}: larger than ${ACL_FILE_BYTES_MAX} bytes`);
  try {
    const lines = parseAclFile(text, ACL_NAMES);
    new AclState().load(lines, ACL_NAMES); // every rule checked
    return lines;
  } catch (e) {
    if (e instanceof AclRuleError) throw new ConfigError(`--aclfile ${config.aclFile}: ${e.message}`);
    throw e;
  }
}

/** What this node's links to the leader authenticate with, if anything. */
export function linkAuth(config: ServerConfig): readonly [string, string] | undefined {
  const pass = config.masterAuth ?? config.requirepass;
  return pass === undefined ? undefined : [config.masterUser ?? "default", pass];
}
