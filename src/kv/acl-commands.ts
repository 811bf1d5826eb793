// KV.ACL: the logged form of ACL SETUSER, ACL DELUSER and ACL LOAD, applied by every member in log
// order so that all hold the same users. The server turns ACL SETUSER's `>password` into `#sha256`
// (and checks command and category names) before proposing it: the log never holds a clear password.
//   KV.ACL SETUSER <name> <rule>...   -> +OK or the rule's error
//   KV.ACL DELUSER <name>...          -> :deleted
//   KV.ACL LOAD <user line>...        -> +OK (every user replaced) or the error, nothing changed
// Pure.
import type { ReplyWriter } from "../resp/encode.ts";
import { AclRuleError, AclState } from "./acl.ts";
import type { CommandSpec } from "./command.ts";
import type { KvCtx } from "./commands.ts";

function exec(ctx: KvCtx, argv: string[], out: ReplyWriter): void {
  const acl = ctx.acl;
  if (acl === undefined) {
    out.error("ERR KV.ACL: this state machine holds no ACL users");
    return;
  }
  const sub = argv[1]!.toUpperCase();
  try {
    if (sub === "SETUSER" && argv.length >= 3) {
      acl.setUser(argv[2]!, argv.slice(3), null);
      acl.replicated = true;
      out.ok();
    } else if (sub === "DELUSER" && argv.length >= 3) {
      if (argv.slice(2).includes("default")) {
        out.error("ERR The 'default' user cannot be removed");
        return;
      }
      const n = acl.delUsers(argv.slice(2));
      acl.replicated = true;
      out.int(n);
    } else if (sub === "LOAD") {
      acl.load(argv.slice(2), null);
      acl.replicated = true;
      out.ok();
    } else {
      out.error(`ERR unknown KV.ACL form '${argv[1]!.slice(0, 32)}'`);
    }
  } catch (e) {
    if (!(e instanceof AclRuleError)) throw e;
    out.error(`ERR ${e.message}`);
  }
}

export const ACL_KV_COMMANDS: readonly CommandSpec<KvCtx>[] = [
  { name: "kv.acl", arity: -2, flags: ["write", "admin"], firstKey: 0, lastKey: 0, keyStep: 0, exec },
];

export { AclState };
