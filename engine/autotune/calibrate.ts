/**
 * Calibration: fit a cost model's constants to measured trials. The model is a black box
 * `predict(constants) -> speeds per candidate id`; the fit minimizes the squared log error of
 * prefill and decode tokens/s over the measured candidates, plus a small pull towards the starting
 * constants (so constants the trials cannot tell apart stay where they were), by coordinate search
 * in log space within bounds.
 * @module
 */

/** Speeds of one candidate, tokens/s (0: not measured / not predicted). */
export interface Speeds {
  prefillTps: number;
  decodeTps: number;
}

/** Result of {@linkcode fitConstants}. */
export interface FitResult<K> {
  constants: K;
  /** Squared log error before and after (without the regularization term). */
  lossBefore: number;
  lossAfter: number;
  /** Constants that moved, old and new value. */
  changed: Record<string, { from: number; to: number }>;
}

/** Options of {@linkcode fitConstants}. */
export interface FitOptions {
  /** Weight of the pull towards the starting constants, per (ln ratio)^2; default 0.02. */
  regularization?: number;
  /** Each constant stays within [start / range, start * range]; default 8. */
  range?: number;
  /** Upper bounds for some constants (efficiencies that are fractions). */
  upper?: Record<string, number>;
  /** Coordinate sweeps; default 8. */
  sweeps?: number;
}

/** Squared log error of predictions against measurements (only where both are > 0). */
export function logError(pred: Map<string, Speeds>, measured: Record<string, Speeds>): number {
  let loss = 0;
  for (const [id, m] of Object.entries(measured)) {
    const p = pred.get(id);
    if (!p) continue;
    for (const key of ["prefillTps", "decodeTps"] as const) {
      if (m[key] > 0 && p[key] > 0) loss += Math.log(p[key] / m[key]) ** 2;
    }
  }
  return loss;
}

/**
 * Fit the numeric constants `names` of `start` so `predict` matches `measured`.
 * Other fields of `start` are passed through unchanged.
 */
export function fitConstants<K extends object>(
  start: K,
  names: readonly (keyof K & string)[],
  measured: Record<string, Speeds>,
  predict: (k: K) => Map<string, Speeds>,
  opts: FitOptions = {},
): FitResult<K> {
  const lambda = opts.regularization ?? 0.02;
  const range = Math.log(opts.range ?? 8);
  const sweeps = opts.sweeps ?? 8;
  const x0: Record<string, number> = {};
  for (const n of names) {
    const v = start[n] as unknown;
    if (typeof v !== "number" || !(v > 0)) throw new RangeError(`constant ${n} must be a positive number to be fitted, got ${String(v)}`);
    x0[n] = Math.log(v);
  }
  const hi = (n: string) => Math.min(x0[n] + range, opts.upper?.[n] !== undefined ? Math.log(opts.upper[n]) : Infinity);
  const lo = (n: string) => x0[n] - range;
  const build = (x: Record<string, number>): K => {
    const k = { ...start } as Record<string, unknown>;
    for (const n of names) k[n] = Math.exp(x[n]);
    return k as K;
  };
  const objective = (x: Record<string, number>): number => {
    let reg = 0;
    for (const n of names) reg += (x[n] - x0[n]) ** 2;
    return logError(predict(build(x)), measured) + lambda * reg;
  };
  const x = { ...x0 };
  let best = objective(x);
  let step = Math.log(2);
  for (let s = 0; s < sweeps; s++) {
    for (const n of names) {
      // Try a few multiplicative moves of this constant; keep the best.
      for (const d of [-2, -1, -0.5, 0.5, 1, 2]) {
        const v = Math.min(hi(n), Math.max(lo(n), x[n] + d * step));
        if (v === x[n]) continue;
        const old = x[n];
        x[n] = v;
        const f = objective(x);
        if (f < best - 1e-12) best = f;
        else x[n] = old;
      }
    }
    step /= 2;
  }
  const constants = build(x);
  const changed: Record<string, { from: number; to: number }> = {};
  for (const n of names) {
    const from = start[n] as unknown as number;
    const to = constants[n] as unknown as number;
    if (Math.abs(to / from - 1) > 0.005) changed[n] = { from, to: +to.toPrecision(4) };
  }
  return {
    constants,
    lossBefore: logError(predict(start), measured),
    lossAfter: logError(predict(constants), measured),
    changed,
  };
}
