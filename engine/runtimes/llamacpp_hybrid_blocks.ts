/**
 * Which MoE blocks of a GGUF model the patched llama.cpp can split between the CPU and the GPU
 * (hybrid experts, runtimes/llama.cpp/patches/0003 and 0008). The patch takes the split only for
 * plain gated experts; any other block silently runs llama.cpp's stock path. This is the part of
 * its guard (llm_graph_context::build_moe_ffn) that a model's header shows, so a plan predicts a
 * split only where the runtime will run one:
 * - separate gate, up and down expert matrices (`ffn_gate_exps`, `ffn_up_exps`, `ffn_down_exps`),
 *   not merged gate+up (`ffn_gate_up_exps`), no expert biases or per-expert scales;
 * - a SiLU or GELU gated activation, without a SwiGLU clamp (`<arch>.swiglu_clamp_exp`);
 * - the router's weights applied after the experts (not before, as llama4 does).
 * The activation is fixed by the architecture; the table below lists the bundled llama.cpp's MoE
 * architectures whose experts use another (read from its src/models/*.cpp `build_moe_ffn` calls).
 *
 * @example
 * const { blocks, excluded } = hybridExpertBlocks(await readModel("gpt-oss-20b.gguf"));
 * // blocks: [], excluded: [{ blocks: [0, ..., 23], reason: "gpt-oss experts use the SwiGLU-OAI activation" }]
 * @module
 */
import type { ModelInfo } from "../../core/types.ts";
import type { HybridBlocks } from "./adapter.ts";

/** Architectures whose routed experts the split does not take, and why (llama.cpp's names). */
const ARCH_REASONS: Readonly<Record<string, string>> = {
  llama4: "llama4 applies the router's weights before the experts",
  "gpt-oss": "gpt-oss experts use the SwiGLU-OAI activation",
  "minimax-m3": "minimax-m3 experts use the SwiGLU-OAI activation",
  nemotron_h: "nemotron_h experts use squared ReLU",
  nemotron_h_moe: "nemotron_h_moe experts use squared ReLU",
  smallthinker: "smallthinker experts use ReLU",
  "kimi-k3": "kimi-k3 experts use an activation other than SiLU or GELU",
};

// The part of a block's routed experts a tensor is (the block is the tensor's `layer`).
const EXPERT_PART_RE = /\.ffn_(gate|up|down|gate_up)_exps\.(weight|bias|scale)$/;

/**
 * The MoE blocks of `model` that the patched llama.cpp splits, and the rest with the reason.
 * Blocks are those with routed-expert tensors; a dense model has none.
 */
export function hybridExpertBlocks(model: ModelInfo): HybridBlocks {
  const parts = new Map<number, Set<string>>();
  for (const t of model.tensors) {
    const m = t.layer !== null ? EXPERT_PART_RE.exec(t.name) : null;
    if (!m) continue;
    if (!parts.has(t.layer!)) parts.set(t.layer!, new Set());
    parts.get(t.layer!)!.add(`${m[1]}.${m[2]}`);
  }
  const all = [...parts.keys()].sort((a, b) => a - b);
  if (model.format !== "gguf") return { blocks: [], excluded: all.length ? [{ blocks: all, reason: "not a GGUF model (the split is llama.cpp's)" }] : [] };
  const archReason = ARCH_REASONS[model.architecture];
  if (archReason) return { blocks: [], excluded: all.length ? [{ blocks: all, reason: archReason }] : [] };
  const clamp = clampOf(model);
  const byReason = new Map<string, number[]>();
  const blocks: number[] = [];
  for (const b of all) {
    const reason = blockReason(parts.get(b)!, clamp(b), model.architecture);
    if (reason === null) blocks.push(b);
    else byReason.set(reason, [...(byReason.get(reason) ?? []), b]);
  }
  return { blocks, excluded: [...byReason].map(([reason, bs]) => ({ reason, blocks: bs })) };
}

function blockReason(has: Set<string>, clamp: number, arch: string): string | null {
  if (has.has("gate_up.weight")) return "gate and up experts merged in one tensor (ffn_gate_up_exps)";
  if (!has.has("gate.weight") || !has.has("up.weight") || !has.has("down.weight")) return "experts without separate gate, up and down matrices";
  if ([...has].some((p) => p.endsWith(".bias"))) return "expert biases";
  if ([...has].some((p) => p.endsWith(".scale"))) return "per-expert scales";
  if (clamp > 1e-6) return `a SwiGLU clamp on the experts (${arch}.swiglu_clamp_exp)`;
  return null;
}

/**
 * The SwiGLU clamp of block `b` from `<arch>.swiglu_clamp_exp` (one number, or one per block).
 * ModelInfo keeps arrays of up to 64 entries; a longer one is stored as its length, which reads as a
 * clamp on every block: the split is then not predicted where it might have run, never the reverse.
 */
function clampOf(model: ModelInfo): (b: number) => number {
  const v = model.metadata[`${model.architecture}.swiglu_clamp_exp`];
  if (Array.isArray(v)) return (b) => (typeof v[b] === "number" ? v[b] : 0);
  const x = typeof v === "number" ? v : 0;
  return () => x;
}
