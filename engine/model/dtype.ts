/**
 * The dtype (or GGUF type) holding most of a model's bytes: what a model is called by
 * ("Q8_0", "BF16").
 *
 * @module
 */

/** The dtype with the most bytes among `tensors` (`unknown` for none). */
export function dominantDtype(tensors: { dtype: string; bytes: number }[]): string {
  const by = new Map<string, number>();
  for (const t of tensors) by.set(t.dtype, (by.get(t.dtype) ?? 0) + t.bytes);
  let best = "unknown";
  let bestBytes = -1;
  for (const [d, b] of by) if (b > bestBytes) (best = d), (bestBytes = b);
  return best;
}
