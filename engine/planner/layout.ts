/**
 * A placement of a model: every unit (one tensor group of one block, the output head, the
 * embedding) with its bytes on each tier. This is what memory fit and the cost model read.
 *
 * @module
 */
import type { MemoryByTier } from "../../core/types.ts";
import type { ModelSummary, UnitGroup } from "./summary.ts";

/**
 * Where a unit's bytes live, as the cost model distinguishes them:
 * - `vram`: GPU memory;
 * - `host_mapped`: pinned host memory GPU kernels read over PCIe (zero-copy, through the shim);
 * - `host_cpu`: host memory the CPU computes on (llama.cpp CPU layers/experts); for batches of 32+
 *   tokens llama.cpp copies these weights to the GPU per micro-batch instead;
 * - `stream`: host memory the runtime copies to the GPU for every forward pass (vLLM
 *   --cpu-offload-gb, accelerate offload).
 */
export type CostTier = "vram" | "host_mapped" | "host_cpu" | "stream";

/** One placed unit. */
export interface Unit {
  group: UnitGroup;
  layer: number | null;
  bytes: number;
  params: number;
  tier: CostTier;
}

/** A complete placement. */
export interface Layout {
  units: Unit[];
  /** Where the KV cache lives. */
  kv: "vram" | "host_cpu";
}

/** All units of a model in block order (attention, dense FFN, experts), then output, embedding. */
export function unitsOf(s: ModelSummary, tierOf: (group: UnitGroup, layer: number | null) => CostTier): Unit[] {
  const units: Unit[] = [];
  s.layers.forEach((l, i) => {
    for (const g of ["attention", "ffn_dense", "ffn_experts"] as const) {
      if (l[g].bytes > 0) units.push({ group: g, layer: i, bytes: l[g].bytes, params: l[g].params, tier: tierOf(g, i) });
    }
  });
  if (s.output.bytes > 0) units.push({ group: "output", layer: null, ...s.output, tier: tierOf("output", null) });
  if (s.embedding.bytes > 0) units.push({ group: "embedding", layer: null, ...s.embedding, tier: tierOf("embedding", null) });
  return units;
}

/** Split a unit in two at `vramBytes` (rest on `tier`), keeping params proportional. */
export function splitUnit(u: Unit, vramBytes: number, tier: CostTier): Unit[] {
  if (vramBytes <= 0) return [{ ...u, tier }];
  if (vramBytes >= u.bytes) return [{ ...u, tier: "vram" }];
  const f = vramBytes / u.bytes;
  return [
    { ...u, bytes: vramBytes, params: u.params * f, tier: "vram" },
    { ...u, bytes: u.bytes - vramBytes, params: u.params * (1 - f), tier },
  ];
}

/** Weight bytes per tier (host tiers: `stream` counts as host_cpu memory). */
export function weightBytesByTier(layout: Layout): MemoryByTier {
  const m: MemoryByTier = { vram: 0, host_mapped: 0, host_cpu: 0, disk: 0 };
  for (const u of layout.units) m[u.tier === "stream" ? "host_cpu" : u.tier] += u.bytes;
  return m;
}

/** Blocks with any unit computed by the CPU (each costs a GPU<->CPU hand-off per token). */
export function cpuLayerCount(layout: Layout): number {
  const set = new Set<number>();
  for (const u of layout.units) if (u.tier === "host_cpu" && u.layer !== null) set.add(u.layer);
  return set.size;
}
