/**
 * Writes the placement maps the stock-script benchmark (run_all.py) hands the shim, with the planner's
 * access-aware writer (engine/placement_map.ts), for the benchmark's model shapes at the
 * free VRAM it runs at. The GPU machine has no node: the maps are made here and travel with the tree.
 *
 *   node --import tsx bench/gpu/torch_stock/make_maps.ts [--vram-gib G]
 *
 * Cases: llama8b-bf16, llama8b-fp32, llama14b-bf16; orders: last (the last layers spill first), first.
 * Writes maps/<case>-<order>.map and maps/<case>-<order>.json (host bytes, bytes read per token).
 * The VRAM for weights is what `spillway run --` assumes (python_assist.ts weightsBudgetFor) at
 * 12 GiB free (the ballast) with the shim's 1 GiB reserve: 10.6 GiB. Allocations the map does not
 * name are left to the shim's policy, so a smaller real budget spills the last of them instead of failing.
 *
 * @module
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { placementForTensors, tensorsFromConfig } from "../../../engine/placement_map.ts";
import { formatPlacementMap } from "../../../shim/placement.ts";
import { weightsBudgetFor } from "../../../engine/runtimes/python_assist.ts";

const dir = join(fileURLToPath(new URL(".", import.meta.url)), "maps");
const arg = process.argv.indexOf("--vram-gib");
// What `spillway run --` assumes at 12 GiB free with the shim's 1 GiB reserve (10.6 GiB).
const vramGib = arg > 0 ? Number(process.argv[arg + 1]) : weightsBudgetFor(12 * 2 ** 30, 2 ** 30) / 2 ** 30;
// The shapes of bench/gpu/torch_models.py SHAPES (untied heads): llama-8b, and llama-14b (the
// Qwen2.5-14B layer shape as a Llama, bias-free attention).
const LLAMA_8B = { hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 128256 };
const LLAMA_14B = { hidden_size: 5120, intermediate_size: 13824, num_hidden_layers: 48, num_attention_heads: 40, num_key_value_heads: 8, vocab_size: 152064 };
const MIN_SPILL = 32 * 2 ** 20;
const CASES = [["llama8b-bf16", LLAMA_8B, 2], ["llama8b-fp32", LLAMA_8B, 4], ["llama14b-bf16", LLAMA_14B, 2]] as const;
for (const [name, shape, elt] of CASES) {
  for (const order of ["last", "first"] as const) {
    const p = placementForTensors(tensorsFromConfig(shape, elt), { vramForWeights: vramGib * 2 ** 30, minSpill: MIN_SPILL, layerOrder: order });
    const base = join(dir, `${name}-${order}`);
    writeFileSync(`${base}.map`, formatPlacementMap(p.rules));
    const host = p.allocations.filter((a) => a.place === "host");
    writeFileSync(`${base}.json`, JSON.stringify({
      case: name, order, vramForWeights: vramGib * 2 ** 30, minSpill: MIN_SPILL,
      hostBytes: p.hostBytes, hostReadPerToken: p.hostReadPerToken, vramBytes: p.vramBytes, readPerToken: p.readPerToken,
      hostTensors: host.flatMap((a) => a.tensors), overflow: p.overflow,
    }, null, 1) + "\n");
    console.log(`${name}-${order}: ${p.rules.length} rules, host ${(p.hostBytes / 1e9).toFixed(2)} GB, read/token from host ${(p.hostReadPerToken / 1e9).toFixed(2)} GB of ${(p.readPerToken / 1e9).toFixed(2)} GB`);
  }
}
