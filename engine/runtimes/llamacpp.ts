/**
 * llama.cpp adapter: llama-server / llama-cli / llama-completion / llama-bench argv from a plan.
 * Flag names are those of the llama.cpp shipped with node-llama-cpp 3.22 (common/arg.cpp,
 * tools/llama-bench): `-lm none|mmap` is the load mode (there is no `--no-mmap` any more), and
 * `-fit off` keeps llama.cpp from re-fitting what the plan already decided.
 *
 * @module
 */
import type { LaunchSpec, Plan, RuntimeSettings } from "../../core/types.ts";
import type { AdapterOptions, BenchCounts, RunRecipe, RuntimeAdapter, WrappedCommand, WrappedPlanInputs } from "./adapter.ts";
import { RECIPE_DEFAULTS, WORKLOADS } from "../recipe/parse.ts";

export type { BenchCounts } from "./adapter.ts";
import { runtimeCapabilities } from "./capabilities.ts";
import { shimEnvironment } from "./shim_path.ts";
import { hybridBuild, hybridBuildHint, hybridEnvironment, isHybrid } from "./llamacpp_hybrid.ts";
import { ensurePrivateDir, slotSavePathOf } from "./slot_dir.ts";
import { hybridExpertBlocks } from "./llamacpp_hybrid_blocks.ts";

/** Which llama.cpp program a launch runs. */
export type LlamaProgram = "server" | "cli" | "completion" | "bench";

const PROGRAM_BINARY: Record<LlamaProgram, string> = {
  server: "llama-server",
  cli: "llama-cli",
  completion: "llama-completion",
  bench: "llama-bench",
};

/** What llama.cpp can express. */
export const llamaCppCapabilities = runtimeCapabilities({
  strategies: ["all_vram", "layers_cpu", "experts_cpu", "kv_host", "zero_copy", "combined", "hybrid"],
  formats: ["gguf"],
  gpuLayers: true,
  cpuMoeLayers: true,
  overrideTensors: true,
  kvOnHost: true,
  threads: true,
});

/** How to get llama.cpp when its binaries are missing. */
export const llamaCppHint =
  "Install llama.cpp (e.g. `brew install llama.cpp`, a release archive from https://github.com/ggml-org/llama.cpp/releases, " +
  "or build it: `cmake -B build -DGGML_CUDA=ON && cmake --build build -j`) and put its bin/ directory on PATH, " +
  "or set `binary` in the recipe to the program's path.";

/** Flags shared by llama-server, llama-cli and llama-completion for the plan's settings. */
export function llamaCommonArgs(modelPath: string, s: RuntimeSettings): string[] {
  const argv = ["-m", modelPath, "-ngl", String(s.gpuLayers)];
  if (s.cpuMoeLayers > 0) argv.push("-ncmoe", String(s.cpuMoeLayers));
  if (s.overrideTensors.length > 0) {
    argv.push("-ot", s.overrideTensors.map((o) => `${o.pattern}=${o.device}`).join(","));
  }
  if (s.kvOnHost) argv.push("-nkvo");
  argv.push(...kvTypeArgs(s));
  argv.push(...splitArgs(s));
  argv.push("-lm", s.loadMode);
  argv.push("-c", String(s.contextLength), "-b", String(s.batch), "-ub", String(s.ubatch), "-t", String(s.threads));
  argv.push("-fit", "off");
  return argv;
}

/**
 * A layer split over devices (issue 19): `--rpc host:port,...` (rpc-servers, whose devices llama.cpp
 * lists first), `-ts` blocks per listed device, `-sm layer`. Nothing without a split.
 */
export function splitArgs(s: RuntimeSettings): string[] {
  if (!s.split) return [];
  const argv: string[] = [];
  if (s.split.rpc.length > 0) argv.push("--rpc", s.split.rpc.join(","));
  argv.push("-ts", s.split.tensorSplit.join(","), "-sm", s.split.mode);
  return argv;
}

/**
 * KV cache type flags (issue 21): `-ctk T -ctv T` for a quantized cache, with `-fa on` (llama.cpp
 * refuses a quantized V cache without flash attention); nothing for f16, the default.
 */
export function kvTypeArgs(s: RuntimeSettings): string[] {
  const argv: string[] = [];
  if (s.kvType !== undefined && s.kvType !== "f16") argv.push("-ctk", s.kvType, "-ctv", s.kvType);
  if (s.flashAttention || (s.kvType !== undefined && s.kvType !== "f16")) argv.push("-fa", "on");
  return argv;
}

/**
 * llama-server's slot cache (issue 21): `--slot-save-path DIR` (llama-server requires the directory
 * to exist; `spillway run` creates it 0700 first) and `--cache-reuse N` when N > 0.
 */
export function slotCacheArgs(s: RuntimeSettings): string[] {
  if (!s.slotCache) return [];
  const argv = ["--slot-save-path", s.slotCache.dir];
  if (s.slotCache.reuse > 0) argv.push("--cache-reuse", String(s.slotCache.reuse));
  return argv;
}

/**
 * llama-bench arguments (without the program name) measuring the plan's configuration:
 * prefill of `promptTokens` and decode of `genTokens`, JSON output.
 */
export function llamaBenchArgs(plan: Plan, counts: BenchCounts): string[] {
  const s = plan.settings;
  const argv = ["-m", plan.model.path, "-p", String(counts.promptTokens), "-n", String(counts.genTokens)];
  argv.push("-ngl", String(s.gpuLayers), "-ncmoe", String(s.cpuMoeLayers));
  // llama-bench separates the overrides of one configuration with ';' (',' separates configurations).
  if (s.overrideTensors.length > 0) {
    argv.push("-ot", s.overrideTensors.map((o) => `${o.pattern}=${o.device}`).join(";"));
  }
  argv.push("-nkvo", s.kvOnHost ? "1" : "0", "-lm", s.loadMode);
  // llama-bench separates tensor-split values with '/' (',' separates configurations).
  if (s.split) {
    if (s.split.rpc.length > 0) argv.push("--rpc", s.split.rpc.join(","));
    argv.push("-ts", s.split.tensorSplit.join("/"), "-sm", s.split.mode);
  }
  argv.push(...kvTypeArgs(s));
  argv.push("-b", String(s.batch), "-ub", String(s.ubatch), "-t", String(s.threads));
  if (counts.repetitions !== undefined) argv.push("-r", String(counts.repetitions));
  argv.push("-o", "json");
  return argv;
}

function programOf(recipe: RunRecipe | null): LlamaProgram {
  return recipe?.program ?? "server";
}

/** Plan -> llama.cpp launch. */
export function llamaCppLaunchSpec(plan: Plan, recipe: RunRecipe | null, options?: AdapterOptions): LaunchSpec {
  const program = programOf(recipe);
  const s = plan.settings;
  // Hybrid experts need the patched build (runtimes/llama.cpp/build.sh): its binary unless the
  // recipe names one; when it is not built the bare name stays and the launcher says how to build it.
  const hybrid = isHybrid(s);
  const binary = recipe?.binary ?? (hybrid ? hybridBuild().built(PROGRAM_BINARY[program]) : null) ?? PROGRAM_BINARY[program];
  let args: string[];
  if (program === "bench") {
    args = llamaBenchArgs(plan, { promptTokens: plan.workload.promptTokens, genTokens: plan.workload.generatedTokens });
  } else {
    args = llamaCommonArgs(plan.model.path, s);
    if (program === "server") args.push(...slotCacheArgs(s));
    if (program === "cli" || program === "completion") {
      args.push("-n", String(plan.workload.generatedTokens));
      if (recipe?.prompt !== undefined) args.push("-p", recipe.prompt);
      if (program === "completion") args.push("-no-cnv");
      else args.push("-st");
    }
  }
  const env: Record<string, string> = {
    ...shimEnvironment(s.shim, options),
    ...hybridEnvironment(s),
    ...(recipe?.env ?? {}),
  };
  const extra = recipe?.args ?? [];
  // Recipe arguments win over planned ones (llama-bench flags differ: appended as given).
  return { argv: [binary, ...(program === "bench" ? [...args, ...extra] : mergeUserArgs(args, extra))], env };
}

/** The llama.cpp adapter. */
export const llamaCppAdapter: RuntimeAdapter = {
  name: "llama.cpp",
  capabilities: llamaCppCapabilities,
  binaryHint: { binary: "llama-server", hint: llamaCppHint },
  toLaunchSpec: llamaCppLaunchSpec,
  fromCommandLine: llamaCommandLine,
  benchArgs: llamaBenchArgs,
  hybridBlocks: hybridExpertBlocks,
  // Hybrid plans run the patched build (runtimes/llama.cpp/build.sh) with the split's switches.
  planBuild: (settings) =>
    isHybrid(settings) ? { env: hybridEnvironment(settings), program: (name) => hybridBuild().built(name), hint: () => hybridBuildHint() } : null,
  // llama-server requires the slot directory to exist: create it private (0700, no symlink).
  preflight: (spec) => {
    const dir = slotSavePathOf(spec.argv);
    if (dir !== null) ensurePrivateDir(dir);
  },
};

/** llama.cpp program names spillway recognizes when wrapping a command (`spillway run -- llama-server ...`). */
export const LLAMA_CPP_BINARIES: readonly string[] = Object.values(PROGRAM_BINARY);

/** The llama.cpp program a binary name or path runs, or null when it is not one. */
export function llamaProgramOf(binary: string): LlamaProgram | null {
  const base = binary.split("/").pop() ?? binary;
  for (const [program, name] of Object.entries(PROGRAM_BINARY)) {
    if (base === name) return program as LlamaProgram;
  }
  return null;
}

/** Spellings of each flag the adapter writes (llama.cpp common/arg.cpp), and whether it takes a value. */
const FLAG_ALIASES: { names: string[]; value: boolean }[] = [
  { names: ["-m", "--model"], value: true },
  { names: ["-ngl", "--gpu-layers", "--n-gpu-layers"], value: true },
  { names: ["-ncmoe", "--n-cpu-moe", "-cmoe", "--cpu-moe"], value: true },
  { names: ["-ot", "--override-tensor"], value: true },
  { names: ["-nkvo", "--no-kv-offload", "-kvo", "--kv-offload"], value: false },
  { names: ["-lm", "--load-mode"], value: true },
  { names: ["-c", "--ctx-size"], value: true },
  { names: ["-b", "--batch-size"], value: true },
  { names: ["-ub", "--ubatch-size"], value: true },
  { names: ["-t", "--threads"], value: true },
  { names: ["-fit", "--fit"], value: true },
  { names: ["-n", "--predict", "--n-predict"], value: true },
  { names: ["-ctk", "--cache-type-k"], value: true },
  { names: ["-ctv", "--cache-type-v"], value: true },
  { names: ["-fa", "--flash-attn"], value: true },
  { names: ["--rpc"], value: true },
  { names: ["-ts", "--tensor-split"], value: true },
  { names: ["-sm", "--split-mode"], value: true },
  { names: ["--slot-save-path"], value: true },
  { names: ["--cache-reuse"], value: true },
];

function aliasGroup(flag: string): { names: string[]; value: boolean } | undefined {
  const name = flag.includes("=") ? flag.slice(0, flag.indexOf("=")) : flag;
  return FLAG_ALIASES.find((g) => g.names.includes(name));
}

/**
 * The planned flags with every flag the user also gave removed (in any spelling), then the
 * user's arguments: what the user typed wins over the plan.
 */
export function mergeUserArgs(planned: string[], user: readonly string[]): string[] {
  const given = new Set<{ names: string[]; value: boolean }>();
  for (const a of user) {
    const g = aliasGroup(a);
    if (g) given.add(g);
  }
  const kept: string[] = [];
  for (let i = 0; i < planned.length; i++) {
    const g = aliasGroup(planned[i]!);
    const takesValue = g?.value === true && !planned[i]!.includes("=");
    if (g && given.has(g)) {
      if (takesValue) i++;
      continue;
    }
    kept.push(planned[i]!);
    if (takesValue && i + 1 < planned.length) kept.push(planned[++i]!);
  }
  return [...kept, ...user];
}

/** The value of `-m`/`--model` (also `--model=path`) in a llama.cpp argv, or null. */
export function modelArgOf(args: readonly string[]): string | null {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if ((a === "-m" || a === "--model") && i + 1 < args.length) return args[i + 1]!;
    if (a.startsWith("--model=")) return a.slice("--model=".length);
  }
  return null;
}

/** The integer value of a flag (any of `names`) in an argv, or undefined. */
export function intArgOf(args: readonly string[], names: readonly string[]): number | undefined {
  for (let i = 0; i < args.length - 1; i++) {
    if (names.includes(args[i]!)) {
      const n = Number(args[i + 1]);
      if (Number.isInteger(n)) return n;
    }
  }
  return undefined;
}

/** The integer value of `flag` given in any of its spellings of {@link FLAG_ALIASES}, or undefined. */
function intFlagOf(args: readonly string[], flag: string): number | undefined {
  return intArgOf(args, aliasGroup(flag)?.names ?? [flag]);
}

/**
 * A llama.cpp command line (`llama-server -m m.gguf -c 8192 ...`) read back: the model, the plan
 * inputs its -c/-b/-ub/-t fix (recipe defaults otherwise, the chat workload, automatic placement),
 * and the merge that keeps the user's flags. Null for llama-bench and for a command without `-m`.
 */
export function llamaCommandLine(argv: readonly string[]): WrappedCommand | null {
  const binary = argv[0];
  const program = binary === undefined ? null : llamaProgramOf(binary);
  const args = argv.slice(1);
  const modelPath = program && program !== "bench" ? modelArgOf(args) : null;
  if (!binary || !program || !modelPath) return null;
  const planInputs: WrappedPlanInputs = {
    file: "(command line)",
    runtime: { name: "llama.cpp", binary },
    context: intFlagOf(args, "-c") ?? RECIPE_DEFAULTS.context,
    batch: intFlagOf(args, "-b") ?? RECIPE_DEFAULTS.batch,
    workload: { ...WORKLOADS.chat },
    placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
  };
  const ubatch = intFlagOf(args, "-ub");
  if (ubatch !== undefined) planInputs.ubatch = ubatch;
  const threads = intFlagOf(args, "-t");
  if (threads !== undefined) planInputs.threads = threads;
  return {
    modelPath,
    planInputs,
    runRecipe: { file: "(command line)", binary, program },
    mergeArgs: (planned) => mergeUserArgs(planned, args),
  };
}
