/**
 * An error in what the user gave floe: a pipeline module, a selection, a flag, a config value.
 * The CLI prints its message as one line and exits with code 2, never with a stack trace.
 *
 * @example
 * throw new UserError("unknown asset `ordrs`; did you mean `orders`?");
 */
export class UserError extends Error {
  override readonly name = "UserError";
}

/** True when `e` is a {@link UserError}, also across two copies of floe in one process. */
export function isUserError(e: unknown): e is UserError {
  return e instanceof Error && e.name === "UserError";
}

/**
 * The closest candidate to `name` by edit distance, for "did you mean" hints.
 *
 * @example
 * closest("ordrs", ["orders", "customers"]) // "orders"
 */
export function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const limit = Math.max(2, Math.floor(name.length / 3));
  return bestDistance <= limit ? best : undefined;
}

/** `; did you mean `x`?` or the empty string. */
export function didYouMean(name: string, candidates: Iterable<string>): string {
  const c = closest(name, candidates);
  return c === undefined ? "" : `; did you mean \`${c}\`?`;
}

function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}
