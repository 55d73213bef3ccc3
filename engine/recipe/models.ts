/**
 * Model ids a recipe may name instead of a path, mapped to the shape names of
 * engine/model/shapes.ts (so a plan can be made from the shape when the file is absent) and to the
 * default file location `~/.cache/spillway/models/<id>-<quant>.gguf`.
 *
 * @module
 */
import { join } from "node:path";
import { cacheDir } from "../../core/paths.ts";

/** One known model id. */
export interface KnownModel {
  /** Shape name in engine/model/shapes.ts. */
  shape: string;
  /** One line for docs and messages. */
  description: string;
}

/** Known ids (lower case). */
export const KNOWN_MODELS: Readonly<Record<string, KnownModel>> = {
  "glm-4.7-flash": { shape: "glm-4.7-flash", description: "GLM-4.7-Flash MoE (30B total, ~3B active, MLA attention)" },
  "qwen3-30b-a3b": { shape: "qwen3moe-30b-a3b", description: "Qwen3-30B-A3B MoE (48 blocks, 128 experts, 8 used)" },
  "llama-3.1-8b": { shape: "llama-8b", description: "Llama 3.1 8B dense" },
  "llama-3.1-70b": { shape: "llama-70b", description: "Llama 3.1 70B dense" },
  "tiny-moe": { shape: "tiny-moe", description: "tiny qwen3moe test shape (a few MB; demo and tests)" },
  "tiny-llama": { shape: "tiny-llama", description: "tiny dense llama test shape (a few MB)" },
  "tiny-mla": { shape: "tiny-mla", description: "tiny deepseek2 (MLA + MoE) test shape" },
};

/** Quantizations a known id may be asked in. */
export const KNOWN_QUANTS: readonly string[] = ["q8_0", "q4_0", "f16"];

/** Directory of downloaded or synthesized models: `~/.cache/spillway/models`. */
export function modelCacheDir(): string {
  return join(cacheDir(), "models");
}

/** Default file of a known id: `~/.cache/spillway/models/<id>-<quant>.gguf`. */
export function defaultModelPath(id: string, quant: string): string {
  return join(modelCacheDir(), `${id}-${quant.toLowerCase()}.gguf`);
}
