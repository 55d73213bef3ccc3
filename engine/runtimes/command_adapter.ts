/**
 * `command` adapter: any program, run with the shim when the plan applies it. The argv comes from
 * the recipe (`command`) or from the wrapped command line (`spillway run -- prog args`).
 *
 * @module
 */
import { LaunchError } from "../../core/errors.ts";
import type { LaunchSpec, Plan } from "../../core/types.ts";
import type { AdapterOptions, RunRecipe, RuntimeAdapter } from "./adapter.ts";
import { runtimeCapabilities } from "./capabilities.ts";
import { shimEnvironment } from "./shim_path.ts";
import { inlinePlacementRules, isPythonCommand } from "./python_assist.ts";

/** An arbitrary command can only be placed as a whole: on the GPU, or spilled by the shim. */
export const commandCapabilities = runtimeCapabilities({
  strategies: ["all_vram", "zero_copy"],
  formats: ["gguf", "safetensors"],
});

/** Plan -> the recipe's command, under the shim when the plan says so. */
export function commandLaunchSpec(plan: Plan | null, recipe: RunRecipe | null, options?: AdapterOptions): LaunchSpec {
  const command = recipe?.command ?? [];
  if (command.length === 0 || !command[0]) {
    throw new LaunchError(`${recipe?.file ?? "command"}: runtime 'command' needs a non-empty 'command' argv to run`);
  }
  const argv = [recipe?.binary ?? command[0], ...command.slice(1), ...(recipe?.args ?? [])];
  const shim = plan?.settings.shim ?? null;
  const env: Record<string, string> = { ...shimEnvironment(shim, options) };
  // A Python command of a recipe naming its model (a Hugging Face directory) gets the
  // access-aware placement rules and PyTorch's environment, as the transformers recipe does.
  if (plan && shim && isPythonCommand(argv) && !shim.placementMapFile && shim.vramBudgetBytes !== undefined) {
    const p = plan.model.path;
    const dir = /\.(safetensors|json)$/.test(p) ? p.slice(0, Math.max(p.lastIndexOf("/"), 0)) || "." : p;
    const inline = inlinePlacementRules(dir, shim.vramBudgetBytes, shim.minSpillBytes);
    if (inline) env.SPILLWAY_PLACEMENT_RULES = inline.rules;
    env.TORCH_CUDNN_SDPA_DEPRIORITIZED = "1";
  }
  // JAX under the shim grows on demand instead of preallocating 75% of VRAM + host (python_assist.ts says why).
  if (shim && isPythonCommand(argv) && !Object.keys(process.env).some((k) => k.startsWith("XLA_PYTHON_CLIENT_"))) {
    env.XLA_PYTHON_CLIENT_PREALLOCATE = "false";
  }
  Object.assign(env, recipe?.env ?? {});
  return { argv, env };
}

/** The command adapter. */
export const commandAdapter: RuntimeAdapter = {
  name: "command",
  capabilities: commandCapabilities,
  binaryHint: { binary: "(the recipe's command)", hint: "Check the program name in the recipe's `command`, or give its full path." },
  toLaunchSpec: commandLaunchSpec,
};
