/**
 * What each runtime can express, for planning: the runtime adapters (engine/runtimes/) declare it,
 * so the planner only proposes what the chosen runtime can do.
 *
 * @module
 */
import { adapterFor, runtimeName } from "../runtimes/mod.ts";
import type { RuntimeCapabilities } from "../runtimes/capabilities.ts";

export type { RuntimeCapabilities };

/** Capabilities of `runtime` as its adapter declares them (the `command` adapter's for unknown names). */
export function capabilitiesFor(runtime: string): RuntimeCapabilities {
  return adapterFor(runtimeName(runtime) ?? "command").capabilities;
}
