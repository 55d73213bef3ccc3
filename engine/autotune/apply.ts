/**
 * A stored autotune outcome applied to a plan: the measured best becomes the choice, with
 * the trials' speeds. `spillway plan` and `spillway run` apply it without running trials.
 *
 * @module
 */
import type { Plan } from "../../core/types.ts";
import { type AutotuneEntry, autotunePath, findAutotune } from "./outcome_cache.ts";

/** Apply a stored outcome to a plan: chosen, settings, predicted and measured from the trials. */
export function applyAutotune(plan: Plan, entry: AutotuneEntry): Plan {
  const c = plan.candidates.find((x) => x.id === entry.chosen);
  if (!c) return plan;
  const measured: NonNullable<Plan["measured"]> = {};
  for (const r of entry.rows) if (r.measured) measured[r.id] = { prefillTps: r.measured.prefillTps, decodeTps: r.measured.decodeTps };
  const best = entry.rows.find((r) => r.id === entry.chosen)!;
  const same = entry.chosen === entry.predictedChoice;
  const reason = `Autotuned (${entry.rows.filter((r) => r.measured).length} trials, ${entry.measuredAt}): ${c.id} measured best for the workload, ` +
    `${best.measured!.totalSeconds.toFixed(2)} s per request (${best.measured!.decodeTps.toFixed(1)} tok/s decode, ${best.measured!.prefillTps.toFixed(0)} tok/s prefill)` +
    (same ? "; the cost model predicted the same choice." : `; the cost model had predicted ${entry.predictedChoice}.`) + ` ${plan.reason}`;
  return { ...plan, chosen: c.id, settings: c.settings, predicted: c.predicted, memory: c.memory, measured, reason };
}

/** The stored autotune choice for this plan applied, or the plan unchanged (for runs without --autotune). */
export function applyCachedAutotune(plan: Plan, cacheFile: string = autotunePath()): Plan {
  try {
    const e = findAutotune(plan, cacheFile);
    return e ? applyAutotune(plan, e) : plan;
  } catch {
    return plan;
  }
}
