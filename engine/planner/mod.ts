/**
 * The placement planner: candidates per runtime capability, memory fit, roofline cost model,
 * choice and reason (engine/recipe_plan.ts plans a whole recipe).
 *
 * @module
 */
export { plan, planContext, rankCandidates } from "./plan.ts";
export type { PlanOptions, PlanRecipe } from "./plan.ts";
export { DEFAULT_UBATCHES, enumerateSpecs, evaluate, layoutFor } from "./candidates.ts";
export type { CandidateSpec, Evaluated, PlanContext } from "./candidates.ts";
export { DEFAULT_CONSTANTS, expertsTouched, isLlamaFamily, predict } from "./cost.ts";
export type { CostConstants, CostSettings, Prediction, RoutingModel } from "./cost.ts";
export { computeBufferBytes, DEFAULT_RESERVE, HOST_FRACTION, kvCacheBytes, memoryLimits, memoryNeed } from "./memory.ts";
export { capabilitiesFor } from "./capabilities.ts";
export type { RuntimeCapabilities } from "./capabilities.ts";
export { summarizeModel } from "./summary.ts";
export type { ModelSummary } from "./summary.ts";
export { modelInfoFromShape, shapeIdFor } from "./from_shape.ts";
export { formatPlan } from "./format.ts";
