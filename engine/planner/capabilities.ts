/**
 * What each runtime can express, for planning: the runtime adapters (engine/runtimes/) declare it,
 * so the planner only proposes what the chosen runtime can do.
 *
 * @module
 */
import { adapterFor, runtimeName } from "../runtimes/mod.ts";
import type { RuntimeCapabilities } from "../runtimes/capabilities.ts";
import type { HybridBlocks } from "../runtimes/adapter.ts";
import type { ModelInfo } from "../../core/types.ts";

export type { HybridBlocks, RuntimeCapabilities };

/** Capabilities of `runtime` as its adapter declares them (the `command` adapter's for unknown names). */
export function capabilitiesFor(runtime: string): RuntimeCapabilities {
  return adapterFor(runtimeName(runtime) ?? "command").capabilities;
}

/** The MoE blocks of `model` that `runtime`'s hybrid split runs in, as its adapter says (none where it has no split). */
export function hybridBlocksFor(runtime: string, model: ModelInfo): HybridBlocks {
  return adapterFor(runtimeName(runtime) ?? "command").hybridBlocks?.(model) ?? { blocks: [], excluded: [] };
}
