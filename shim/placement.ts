/**
 * The shim's placement map (SPILLWAY_PLACEMENT file, or SPILLWAY_PLACEMENT_RULES inline): one rule
 * per line, the first rule whose matchers all hold decides where an allocation goes. The format is in
 * docs/shim.md; engine/placement_map.ts computes the access-aware rules from a model's tensors
 * (for `spillway run -- python …` and the transformers runtime); a user may also write one by hand.
 *
 * @example
 * ```ts
 * import { formatPlacementMap } from "./placement.ts";
 * const text = formatPlacementMap([
 *   { index: 0, action: { head: 10 * 2 ** 30 } }, // the weight buffer: 10 GiB VRAM, the rest host
 *   { action: "vram" },                          // everything else (KV cache, compute) in VRAM
 * ]);
 * ```
 *
 * @module
 */
import { writeFileSync } from "node:fs";

/** Where a matching allocation goes: all VRAM, all host, a VRAM head of N bytes + host tail, or the default policy. */
export type PlacementAction = "vram" | "host" | "auto" | { head: number };

/** One rule. Omitted matchers match anything. */
export interface PlacementRule {
  /** The allocation's 0-based number among those the shim handled. */
  index?: number;
  /**
   * The allocation's 0-based number among those this rule's size matchers (`size`, `min`, `max`)
   * accept: `{ min: 32 MiB, nth: 0 }` is the first allocation of at least 32 MiB.
   */
  nth?: number;
  /** Exact size in bytes. */
  size?: number;
  /** Smallest size in bytes. */
  min?: number;
  /** Largest size in bytes. */
  max?: number;
  action: PlacementAction;
  /** Written as a trailing comment. */
  comment?: string;
}

function count(name: string, n: number | undefined): string | null {
  if (n === undefined) return null;
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`placement rule ${name} must be a non-negative whole number, got ${n}`);
  return `${name}=${n}`;
}

/** The text of a placement map. @throws RangeError on a negative or fractional number. */
export function formatPlacementMap(rules: readonly PlacementRule[]): string {
  const lines = ["# spillway placement map v1: [index=N] [nth=K] [size=B] [min=B] [max=B] vram|host|auto|head=B"];
  for (const r of rules) {
    const parts = [count("index", r.index), count("nth", r.nth), count("size", r.size), count("min", r.min), count("max", r.max)]
      .filter((p): p is string => p !== null);
    if (parts.length === 0) parts.push("*");
    parts.push(typeof r.action === "string" ? r.action : count("head", r.action.head)!);
    lines.push(parts.join(" ") + (r.comment ? `  # ${r.comment.replace(/\n/g, " ")}` : ""));
  }
  return lines.join("\n") + "\n";
}

/** Write a placement map file; returns the path. */
export function writePlacementMap(path: string, rules: readonly PlacementRule[]): string {
  writeFileSync(path, formatPlacementMap(rules));
  return path;
}
