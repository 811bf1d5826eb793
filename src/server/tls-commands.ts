// CONFIG SET of the client TLS parameters (tls-cert-file, tls-key-file, tls-ca-cert-file,
// tls-auth-clients): the files are re-read at once and new connections get them, as Redis does.
import { ConfigError } from "../errors.ts";
import type { ReplyWriter } from "../resp/encode.ts";
import type { ServerCtx } from "./dispatch.ts";
import { TLS_CONFIG_PARAMS, withTlsParams } from "./tls.ts";

export { tlsConfigParams } from "./tls.ts";

/**
 * Handles `CONFIG SET` when every parameter it names is a TLS one (true: answered). All pairs are
 * applied together or not at all.
 */
export function configSetTls(ctx: ServerCtx, argv: string[], out: ReplyWriter): boolean {
  const pairs: [string, string][] = [];
  for (let i = 2; i + 1 < argv.length; i += 2) pairs.push([argv[i]!.toLowerCase(), argv[i + 1]!]);
  if ((argv.length - 2) % 2 !== 0 || pairs.length === 0) return false;
  if (!pairs.every(([name]) => (TLS_CONFIG_PARAMS as readonly string[]).includes(name))) return false;
  const tls = ctx.server.tls;
  if (tls === undefined) {
    out.error("ERR CONFIG SET failed: TLS is not enabled on this node (start it with --tls-port)");
    return true;
  }
  try {
    ctx.server.reloadTls(withTlsParams(tls.config, pairs));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    out.error(`ERR CONFIG SET failed (possibly related to argument '${pairs[0]![0]}') - ${e.message}`);
    return true;
  }
  out.ok();
  return true;
}
