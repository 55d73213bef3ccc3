/**
 * spillway's public API for Node, Bun and Deno apps: read a recipe and a model's headers, probe
 * the hardware, plan placement, launch the runtime with the plan applied, and measure.
 *
 * @example
 * ```ts
 * import { loadFfi } from "spillway";
 * const ffi = await loadFfi();
 * console.log(ffi.backend);
 * ```
 *
 * @module
 */
export * from "./core/types.ts";
export * from "./core/errors.ts";
export { currentRuntime, loadFfi } from "./ffi/mod.ts";
export type { Ffi, FnDecl, NativeLibrary, NativeType, SymbolDecls } from "./ffi/types.ts";
export { defineStruct } from "./ffi/struct.ts";
export type { FieldSpec, FieldType, StructLayout, StructValue } from "./ffi/struct.ts";
export { libc } from "./ffi/libc.ts";
export type { Libc } from "./ffi/libc.ts";

// Recipes, models, hardware, planning.
export { loadRecipe, parseRecipe } from "./engine/recipe/mod.ts";
export type { Recipe } from "./engine/recipe/mod.ts";
export { readModel } from "./engine/model/mod.ts";
export { synthesize } from "./engine/model/synth.ts";
export { listShapes } from "./engine/model/shapes.ts";
export { getProfile, probeHardware, profileNames, resolveHardware } from "./engine/hardware/mod.ts";
export { plan } from "./engine/planner/mod.ts";
export type { PlanOptions } from "./engine/planner/mod.ts";
export { planRecipe } from "./engine/recipe_plan.ts";
export type { PlannedRecipe } from "./engine/recipe_plan.ts";
export { autotune } from "./engine/autotune/autotune.ts";
export type { AutotuneOptions, AutotuneResult } from "./engine/autotune/autotune.ts";
export { runBench } from "./engine/hardware/measure/mod.ts";

// Launching runtimes with a plan, and watching them.
export { adapterFor, llamaBenchArgs } from "./engine/runtimes/mod.ts";
export type { RunRecipe, RuntimeAdapter, RuntimeCapabilities } from "./engine/runtimes/mod.ts";
export { launch, launchSpec } from "./engine/launch/mod.ts";
export type { LaunchHandle, LaunchOptions, PlanLaunchOptions } from "./engine/launch/mod.ts";
export { snapshot } from "./engine/monitor.ts";
export type { ProcessStats, Snapshot } from "./engine/monitor.ts";

// The shim and the kernel module.
export { locateShim, shimEnv, shimLibraryPath } from "./shim/build.ts";
export { decodeShimStats, listShimStats, readShimStats } from "./shim/stats.ts";
export { openShimControl } from "./shim/control.ts";
export { formatPlacementMap, writePlacementMap } from "./shim/placement.ts";
export type { ShimStats } from "./shim/stats.ts";
export { Pool } from "./kmod/pool.ts";
export { buildModule, loadModule, moduleStatus, unloadModule } from "./kmod/loader.ts";
export type { ModuleStatus } from "./kmod/loader.ts";
