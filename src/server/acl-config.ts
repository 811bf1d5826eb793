// The ACL users a node starts from, as its flags give them (--requirepass, --aclfile): checked
// against the server's command table, passwords hashed.
import { readFileSync } from "node:fs";
import type { ServerConfig } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { AclRuleError, AclState, describeUser, defaultUser } from "../kv/acl.ts";
import { ACL_FILE_BYTES_MAX, parseAclFile, sha256Hex } from "./acl.ts";
import { ACL_CATEGORY_NAMES } from "./acl-categories.ts";
import { ALL_COMMANDS } from "./dispatch.ts";

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

