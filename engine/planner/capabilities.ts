/**
 * What each runtime can express, for planning: the runtime adapters (engine/runtimes/) declare it,
 * so the planner only proposes what the chosen runtime can do.
 *
 * @module
 */
import { adapterFor, runtimeName } from "../runtimes/mod.ts";
import type { RuntimeCapabilities } from "../runtimes/capabilities.ts";
import type { HybridBlocks, RuntimeAdapter } from "../runtimes/adapter.ts";
import type { ModelInfo } from "../../core/types.ts";

export type { HybridBlocks, RuntimeCapabilities };

/** The adapter of `runtime` (the `command` adapter for unknown names). */
function adapterOf(runtime: string): RuntimeAdapter {
  return adapterFor(runtimeName(runtime) ?? "command");
}

/** Capabilities of `runtime` as its adapter declares them (the `command` adapter's for unknown names). */
export function capabilitiesFor(runtime: string): RuntimeCapabilities {
  return adapterOf(runtime).capabilities;
}

/** The MoE blocks of `model` that `runtime`'s hybrid split runs in, as its adapter says (none where it has no split). */
export function hybridBlocksFor(runtime: string, model: ModelInfo): HybridBlocks {
  return adapterOf(runtime).hybridBlocks?.(model) ?? { blocks: [], excluded: [] };
}
