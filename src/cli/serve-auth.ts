// `kv serve`'s authentication flags (--requirepass, --aclfile, --protected-mode, --masteruser,
// --masterauth): their definitions, and the users and link credentials they give a node.
import type { ServerConfig } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { configuredUsers } from "../server/acl-config.ts";

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

/** What this node's links to the leader authenticate with, if anything. */
export function linkAuth(config: ServerConfig): readonly [string, string] | undefined {
  const pass = config.masterAuth ?? config.requirepass;
  return pass === undefined ? undefined : [config.masterUser ?? "default", pass];
}

export { configuredUsers };
