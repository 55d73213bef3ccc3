/**
 * How a recipe (or the CLI) describes the hardware to plan for: probe, a built-in profile, or
 * explicit numbers over one. The recipe parser produces it and engine/hardware/resolve.ts turns it
 * into one HardwareProfile; it lives here so the hardware stage needs nothing of the recipe stage.
 *
 * @module
 */
import type { HardwareProfile } from "../../core/types.ts";

/** Explicit hardware numbers overriding a profile (same field names as HardwareProfile). */
export interface HardwareOverrides {
  name?: string;
  gpu?: null | Partial<Omit<NonNullable<HardwareProfile["gpu"]>, "pcie">> & { pcie?: { gen?: number; width?: number } };
  host?: Partial<HardwareProfile["host"]>;
  disk?: Partial<HardwareProfile["disk"]>;
}

/** Where the hardware description comes from. */
export type HardwareSpec =
  /** Probe this machine (or use the `spillway bench` cache); `fallback` profile when there is no GPU. */
  | { kind: "probe"; fallback?: string }
  /** A built-in profile by name. */
  | { kind: "profile"; name: string }
  /** A profile (or the probe when `profile` is absent) with explicit numbers on top. */
  | { kind: "explicit"; profile?: string; overrides: HardwareOverrides };
