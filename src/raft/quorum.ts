// Majority arithmetic: committed index and election outcome over a set of voters.

export type VoteResult = "won" | "lost" | "pending";

/** Smallest number of voters that forms a majority. */
export function quorumSize(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The largest index that a majority of voters have (each voter's acknowledged match index).
 * An empty configuration commits nothing.
 */
export function committedIndex(voters: Iterable<number>, matchOf: (id: number) => number): number {
  const xs: number[] = [];
  for (const id of voters) xs.push(matchOf(id));
  if (xs.length === 0) return 0;
  xs.sort((a, b) => b - a);
  return xs[quorumSize(xs.length) - 1] as number;
}

/** Election outcome given the votes received so far (absent = not yet answered). */
export function voteResult(voters: Iterable<number>, votes: ReadonlyMap<number, boolean>): VoteResult {
  let n = 0;
  let yes = 0;
  let no = 0;
  for (const id of voters) {
    n++;
    const v = votes.get(id);
    if (v === true) yes++;
    else if (v === false) no++;
  }
  if (n === 0) return "lost";
  const q = quorumSize(n);
  if (yes >= q) return "won";
  if (n - no < q) return "lost";
  return "pending";
}
