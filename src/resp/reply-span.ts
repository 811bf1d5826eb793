// Where one RESP2/RESP3 reply ends in a byte buffer, without decoding it: a node relays the
// leader's reply bytes to its client unchanged. Pure.

/** Nesting depth past which a reply is refused (replies kv relays nest at most a few levels). */
export const REPLY_SPAN_DEPTH_MAX = 64;

/** Bytes that are not RESP. */
export class ReplySpanError extends Error {
  override name = "ReplySpanError";
}

/** Index of the first "\r\n" at or after `from`, or -1. */
function lineEnd(b: Uint8Array, from: number): number {
  for (let i = from; i + 1 < b.length; i++) if (b[i] === 13 && b[i + 1] === 10) return i;
  return -1;
}

function header(b: Uint8Array, start: number, end: number): number {
  let n = 0;
  let i = start + 1;
  let neg = false;
  if (b[i] === 45) {
    neg = true;
    i++;
  }
  if (i === end) throw new ReplySpanError("empty length");
  for (; i < end; i++) {
    const c = b[i]! - 48;
    if (c < 0 || c > 9) throw new ReplySpanError(`bad length byte ${b[i]}`);
    n = n * 10 + c;
    if (n > Number.MAX_SAFE_INTEGER) throw new ReplySpanError("length too large");
  }
  return neg ? -n : n;
}

/**
 * The index just past the reply that starts at `start`, or -1 when the buffer does not hold all
 * of it yet. Throws ReplySpanError for bytes that are not RESP.
 */
export function replyEnd(b: Uint8Array, start: number): number {
  // An explicit stack of "elements still to skip", so a deep reply cannot overflow the JS stack.
  const todo: number[] = [1];
  let at = start;
  while (todo.length > 0) {
    if (todo[todo.length - 1] === 0) {
      todo.pop();
      continue;
    }
    todo[todo.length - 1]!--;
    if (at >= b.length) return -1;
    const t = b[at]!;
    const le = lineEnd(b, at);
    if (le < 0) return -1;
    switch (t) {
      case 43: // + simple
      case 45: // - error
      case 58: // : integer
      case 95: // _ null
      case 44: // , double
      case 35: // # boolean
      case 40: // ( big number
        at = le + 2;
        break;
      case 36: // $ bulk
      case 33: // ! blob error
      case 61: {
        // = verbatim
        const n = header(b, at, le);
        if (n < 0) {
          at = le + 2;
          break;
        }
        const end = le + 2 + n + 2;
        if (end > b.length) return -1;
        at = end;
        break;
      }
      case 42: // * array
      case 126: // ~ set
      case 62: // > push
      case 37: // % map
      case 124: {
        // | attribute (its map, then the reply it annotates)
        let n = header(b, at, le);
        at = le + 2;
        if (n < 0) break;
        if (t === 37 || t === 124) n *= 2;
        if (t === 124) todo[todo.length - 1]!++;
        if (todo.length >= REPLY_SPAN_DEPTH_MAX) throw new ReplySpanError("reply nested too deep");
        if (n > 0) todo.push(n);
        break;
      }
      default:
        throw new ReplySpanError(`unexpected byte ${t} at the start of a reply`);
    }
  }
  return at;
}
