// The kv client library: createClient() and its types and errors. See docs/client.md.
export { Client, createClient } from "./client.ts";
export type { Arg, BulkMode, ClientOptions, ClientTlsOptions, CommandOptions, Key, RespValue, SetOptions, Value } from "./client.ts";
export {
  ClientClosedError,
  ClientError,
  type ClientErrorCode,
  ConnectionError,
  OutcomeUnknownError,
  ReplyProtocolError,
  ServerError,
  TimeoutError,
} from "./errors.ts";
export { ErrorReply, PushReply } from "../resp/reply-parser.ts";
export { type Addr, formatAddr, parseAddr, parseUrl } from "./addr.ts";
