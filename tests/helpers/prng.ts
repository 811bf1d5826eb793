// A small seeded PRNG (xorshift32) for tests whose failures print a seed to replay.

/** Uniform floats in [0, 1) from `seed`; the same seed gives the same stream. */
export function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}
