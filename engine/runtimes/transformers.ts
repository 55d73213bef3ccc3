/**
 * transformers adapter: runs spillway's small Python entry (python/spillway_transformers.py), which
 * loads a Hugging Face model directory (or builds a random-init model from its config.json), runs a
 * prompt and generation, and prints one JSON line with tokens/s. With native offload the plan's
 * max_memory goes to accelerate's device_map="auto"; otherwise the model goes to CUDA whole, and the
 * shim (when the plan applies it) spills what does not fit.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { LaunchError, RuntimeMissingError } from "../../core/errors.ts";
import { fileURLToPath } from "node:url";
import type { LaunchSpec, Plan } from "../../core/types.ts";
import { type AdapterOptions, type RunRecipe, type RuntimeAdapter, withRecipe } from "./adapter.ts";
import { runtimeCapabilities } from "./capabilities.ts";
import { shimEnvironment } from "./shim_path.ts";
import { inlinePlacementRules } from "./python_assist.ts";

/** What transformers can express. */
export const transformersCapabilities = runtimeCapabilities({
  strategies: ["all_vram", "native_offload", "zero_copy"],
  formats: ["safetensors"],
  nativeOffload: true,
  threads: true,
});

/** How to get the Python side. */
export const transformersHint =
  "Install Python 3 with PyTorch and transformers (`pip install torch transformers accelerate`), " +
  "or set `python` in the recipe to an interpreter that has them.";

/** Absolute path of the Python entry, whether running from the sources or from a dist/ bundle. */
export function transformersEntryPath(): string {
  const candidates = [
    new URL("./python/spillway_transformers.py", import.meta.url),
    new URL("../engine/runtimes/python/spillway_transformers.py", import.meta.url),
  ].map((u) => fileURLToPath(u));
  return candidates.find((p) => existsSync(p)) ?? candidates[0]!;
}

/** The model directory: a file path (a shard, config.json) means its directory. */
function modelDir(plan: Plan, recipe: RunRecipe | null): string {
  if (recipe?.modelRef) return recipe.modelRef;
  const p = plan.model.path;
  return /\.(safetensors|json|bin)$/.test(p) ? p.slice(0, Math.max(p.lastIndexOf("/"), 0)) || "." : p;
}

/** Plan -> python entry launch. */
export function transformersLaunchSpec(plan: Plan, recipe: RunRecipe | null, options?: AdapterOptions): LaunchSpec {
  const s = plan.settings;
  const argv = [recipe?.binary ?? recipe?.python ?? "python3", transformersEntryPath(), "--model", modelDir(plan, recipe)];
  argv.push("--prompt-tokens", String(plan.workload.promptTokens), "--gen-tokens", String(plan.workload.generatedTokens));
  argv.push("--threads", String(s.threads));
  const native = s.maxMemory !== undefined && Object.keys(s.maxMemory).length > 0;
  if (native) {
    argv.push("--device-map", "auto", "--max-memory", JSON.stringify(s.maxMemory));
  } else {
    // No GPU layers means no GPU in the plan (cpu-only profile): the model runs on the CPU.
    argv.push("--device", s.gpuLayers > 0 || s.shim ? "cuda" : "cpu");
  }
  if (recipe?.prompt !== undefined) argv.push("--prompt", recipe.prompt);
  const env: Record<string, string> = { ...shimEnvironment(s.shim, options) };
  // The shim places the embedding, then the last layers, in host memory (bytes read per token, not
  // allocation order): the plan's zero-copy layout assumes this order (engine/planner/candidates.ts).
  if (s.shim && !native && !s.shim.placementMapFile && s.shim.vramBudgetBytes !== undefined) {
    const inline = inlinePlacementRules(modelDir(plan, recipe), s.shim.vramBudgetBytes, s.shim.minSpillBytes);
    if (inline) env.SPILLWAY_PLACEMENT_RULES = inline.rules;
  }
  return withRecipe(argv, env, recipe);
}

/** Seconds the Python import check may take (a cold `import torch` reads ~1 GB of libraries). */
const IMPORT_CHECK_TIMEOUT_MS = 60_000;

/**
 * Checks that `python` imports torch and transformers (`python -c "import torch, transformers"`,
 * no shell, with the child's environment) before the run, so a missing package is one line saying
 * what to install instead of a Python traceback from the middle of the run.
 * @throws RuntimeMissingError naming the interpreter, the missing module and the pip command.
 */
export function checkTransformersPython(python: string, env: Record<string, string | undefined>, device: "cuda" | "cpu" = "cuda"): void {
  const r = spawnSync(python, ["-c", "import torch, transformers"], {
    env: env as NodeJS.ProcessEnv,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: IMPORT_CHECK_TIMEOUT_MS,
    shell: false,
  });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT") {
    throw new RuntimeMissingError("transformers", python, transformersHint);
  }
  if (r.error) {
    throw new LaunchError(`transformers: \`${python} -c "import torch, transformers"\` did not finish in ${IMPORT_CHECK_TIMEOUT_MS / 1000} s (${r.error.message})`, { cause: r.error });
  }
  if (r.status === 0) return;
  const stderr = r.stderr ?? "";
  const missing = /No module named '([^'.]+)/.exec(stderr)?.[1];
  const last = stderr.trim().split("\n").pop() ?? `exit status ${r.status}`;
  const torch = device === "cpu"
    ? `${python} -m pip install torch --index-url https://download.pytorch.org/whl/cpu && ${python} -m pip install transformers accelerate`
    : `${python} -m pip install torch transformers accelerate`;
  throw new RuntimeMissingError(
    "transformers",
    python,
    `${python} cannot import ${missing ?? "torch and transformers"} (${last}). Install them for this interpreter: \`${torch}\`` +
      ", or set `runtime.python` in the recipe to an interpreter that has them.",
  );
}

/** The transformers adapter. */
export const transformersAdapter: RuntimeAdapter = {
  name: "transformers",
  capabilities: transformersCapabilities,
  binaryHint: { binary: "python3", hint: transformersHint },
  toLaunchSpec: transformersLaunchSpec,
  preflight: (spec, env) => {
    const device = spec.argv[spec.argv.indexOf("--device") + 1] === "cpu" ? "cpu" : "cuda";
    checkTransformersPython(spec.argv[0]!, env, device);
  },
};
