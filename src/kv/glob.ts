// Glob matching for KEYS and SCAN MATCH: a port of Redis's stringmatchlen (util.c), case-sensitive.
//
// Patterns: `*` any run, `?` one byte, `[abc]` a set, `[^a]` its complement, `[a-z]` a range
// (ends may be given in either order), `\x` the byte x. Both sides are byte strings.

/** Nesting limit against abusive patterns (Redis's: 1000); past it, no match. */
const GLOB_NESTING_MAX = 1000;

/** True when `str` matches the glob `pattern` exactly as Redis's stringmatchlen would. */
export function globMatch(pattern: string, str: string): boolean {
  const state = { skipLongerMatches: false };
  return matchImpl(pattern, 0, str, 0, state, 0);
}

/**
 * True when the pattern is exactly `*`: KEYS and SCAN then skip matching, as Redis does. (Only
 * then: stringmatchlen itself never matches the empty key, so `**` does not return it.)
 */
export function globMatchesAll(pattern: string): boolean {
  return pattern.length === 1 && pattern.charCodeAt(0) === STAR;
}

const STAR = 0x2a;
const QUESTION = 0x3f;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const CARET = 0x5e;
const BACKSLASH = 0x5c;
const DASH = 0x2d;

// Indices stand in for C's moving pointers: pattern[p..], string[s..]. Reads past the end give NaN,
// which, like C's terminating NUL, matches no real byte.
function matchImpl(
  pat: string,
  p: number,
  str: string,
  s: number,
  state: { skipLongerMatches: boolean },
  nesting: number,
): boolean {
  if (nesting > GLOB_NESTING_MAX) return false;
  const pend = pat.length;
  const send = str.length;
  while (p < pend && s < send) {
    const pc = pat.charCodeAt(p);
    switch (pc) {
      case STAR: {
        while (p + 1 < pend && pat.charCodeAt(p + 1) === STAR) p++;
        if (p + 1 === pend) return true;
        while (s < send) {
          if (matchImpl(pat, p + 1, str, s, state, nesting + 1)) return true;
          if (state.skipLongerMatches) return false;
          s++;
        }
        // No match for the rest of the pattern from anywhere in the rest of the string:
        // a longer match for an earlier `*` cannot help either.
        state.skipLongerMatches = true;
        return false;
      }
      case QUESTION:
        s++;
        break;
      case LBRACKET: {
        p++;
        const not = pat.charCodeAt(p) === CARET;
        if (not) p++;
        let match = false;
        const c = str.charCodeAt(s);
        for (;;) {
          const q = pat.charCodeAt(p);
          if (q === BACKSLASH && pend - p >= 2) {
            p++;
            if (pat.charCodeAt(p) === c) match = true;
          } else if (q === RBRACKET) {
            break;
          } else if (p >= pend) {
            p--;
            break;
          } else if (pend - p >= 3 && pat.charCodeAt(p + 1) === DASH) {
            let start = q;
            let end = pat.charCodeAt(p + 2);
            if (start > end) {
              const t = start;
              start = end;
              end = t;
            }
            p += 2;
            if (c >= start && c <= end) match = true;
          } else if (q === c) {
            match = true;
          }
          p++;
        }
        if (not) match = !match;
        if (!match) return false;
        s++;
        break;
      }
      default: {
        let q = pc;
        if (pc === BACKSLASH && pend - p >= 2) q = pat.charCodeAt(++p);
        if (q !== str.charCodeAt(s)) return false;
        s++;
        break;
      }
    }
    p++;
    if (s === send) {
      while (p < pend && pat.charCodeAt(p) === STAR) p++;
      break;
    }
  }
  return p === pend && s === send;
}
