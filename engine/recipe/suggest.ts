/**
 * "Did you mean ...?" for unknown recipe keys and values: Levenshtein distance over the allowed names.
 *
 * @module
 */

/** Edit distance (insertions, deletions, substitutions; case-insensitive). */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const cur = [i];
    for (let j = 1; j <= t.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (s[i - 1] === t[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[t.length];
}

/**
 * The closest allowed name to `word`, or null when none is close enough (distance at most a third
 * of the word's length, at least 2 for short words), or the only allowed name `word` is a prefix of.
 */
export function suggest(word: string, allowed: readonly string[]): string | null {
  // A prefix of a longer name (`rtx-5070` for `rtx-5070-12gb`) is a likely abbreviation.
  const lower = word.toLowerCase();
  if (lower.length >= 3) {
    const prefixed = allowed.filter((a) => a.toLowerCase().startsWith(lower));
    if (prefixed.length === 1) return prefixed[0];
  }
  let best: string | null = null;
  let bestD = Infinity;
  for (const a of allowed) {
    const d = editDistance(word, a);
    if (d < bestD) {
      bestD = d;
      best = a;
    }
  }
  const limit = Math.max(2, Math.floor(word.length / 3));
  return bestD <= limit ? best : null;
}
