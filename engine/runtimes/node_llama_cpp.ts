/**
 * node-llama-cpp adapter: runs the model inside the spillway process (no child, so no shim),
 * with the plan's gpuLayers, threads, context, batch and mmap choice, and measures prompt
 * (prefill) and generation (decode) tokens/s. On a machine without a GPU it uses the CPU
 * prebuilt binary that ships with node-llama-cpp (`build: "never"`: never compiles).
 *
 * @module
 */
import { availableParallelism } from "node:os";
import { LaunchError, RuntimeMissingError } from "../../core/errors.ts";
import type { LaunchSpec, Plan } from "../../core/types.ts";
import type { RunRecipe, RuntimeAdapter } from "./adapter.ts";
import { runtimeCapabilities } from "./capabilities.ts";
import { readGgufHeader } from "../model/gguf.ts";
import { AMX_CPU_VARIANTS, loadCpuBackendWithout, loadedCpuVariant, needsNoAmxBackend } from "./node_llama_cpp_cpu.ts";

/** What node-llama-cpp can express. */
export const nodeLlamaCppCapabilities = runtimeCapabilities({
  strategies: ["all_vram", "layers_cpu"],
  formats: ["gguf"],
  gpuLayers: true,
  shim: false,
  inProcess: true,
  threads: true,
});

/** How to get node-llama-cpp. */
export const nodeLlamaCppHint =
  "node-llama-cpp is a dependency of spillway: run `npm ci` (or `npm install node-llama-cpp`) in the project; " +
  "it ships prebuilt CPU binaries for linux-x64 (@node-llama-cpp/linux-x64).";

/** Everything an in-process run uses; JSON so `--dry-run` can print it. */
export interface NodeLlamaCppRun {
  modelPath: string;
  /** false: CPU build; "auto": node-llama-cpp picks CUDA/Vulkan when present. */
  gpu: false | "auto";
  gpuLayers: number;
  threads: number;
  contextSize: number;
  batchSize: number;
  useMmap: boolean;
  promptTokens: number;
  genTokens: number;
  /** Prompt text; deterministic token ids from the model's vocabulary when absent. */
  prompt?: string;
  /** Vocabulary size (from the model header) for the synthetic prompt; read from the file when absent. */
  vocabSize?: number;
}

/** The plan's settings as node-llama-cpp options. */
export function nodeLlamaCppRun(plan: Plan, recipe: RunRecipe | null): NodeLlamaCppRun {
  const s = plan.settings;
  const promptTokens = plan.workload.promptTokens;
  const genTokens = plan.workload.generatedTokens;
  const run: NodeLlamaCppRun = {
    modelPath: plan.model.path,
    gpu: s.gpuLayers > 0 ? "auto" : false,
    gpuLayers: s.gpuLayers,
    threads: s.threads > 0 ? s.threads : availableParallelism(),
    // The context must hold the prompt and everything generated.
    contextSize: Math.max(s.contextLength, promptTokens + genTokens + 1),
    batchSize: s.batch,
    useMmap: s.loadMode === "mmap",
    promptTokens,
    genTokens,
  };
  if (recipe?.prompt !== undefined) run.prompt = recipe.prompt;
  return run;
}

/**
 * node-llama-cpp runs in process: the LaunchSpec names no program. It lists the settings as
 * pseudo-flags so `--dry-run` and logs show what will run; `engine/launch/mod.ts` runs it with
 * {@link runNodeLlamaCpp}.
 */
export function nodeLlamaCppLaunchSpec(plan: Plan, recipe: RunRecipe | null): LaunchSpec {
  const r = nodeLlamaCppRun(plan, recipe);
  const argv = ["node-llama-cpp", "--model", r.modelPath, "--gpu", String(r.gpu), "--gpu-layers", String(r.gpuLayers)];
  argv.push("--threads", String(r.threads), "--context", String(r.contextSize), "--batch", String(r.batchSize));
  argv.push(r.useMmap ? "--mmap" : "--no-mmap", "--prompt-tokens", String(r.promptTokens), "--gen-tokens", String(r.genTokens));
  return { argv, env: {} };
}

/** The node-llama-cpp adapter. */
export const nodeLlamaCppAdapter: RuntimeAdapter = {
  name: "node-llama-cpp",
  capabilities: nodeLlamaCppCapabilities,
  binaryHint: { binary: "node-llama-cpp", hint: nodeLlamaCppHint },
  toLaunchSpec: nodeLlamaCppLaunchSpec,
};

/** Speed of one prompt + generation. */
export interface GenerationResult {
  runtime: "node-llama-cpp";
  model: string;
  /** "cpu" or the GPU backend node-llama-cpp used. */
  backend: string;
  /** ggml CPU variant that ran it (`icelake`, `sapphirerapids`, ...), null when unknown. */
  cpuVariant: string | null;
  /** CPU variants left out for this model (AMX ones for MLA models, see node_llama_cpp_cpu.ts). */
  cpuVariantsExcluded: string[];
  loadSeconds: number;
  promptTokens: number;
  promptSeconds: number;
  /** Prefill tokens/s: the fastest of PROMPT_REPETITIONS passes over the prompt from an empty cache. */
  promptTps: number;
  genTokens: number;
  genSeconds: number;
  /** Decode tokens/s over the whole generation. */
  genTps: number;
  /**
   * Decode tokens/s from the median time per token (the first, which also evaluates the last
   * prompt token, left out): what the machine does per token, not counting the few tokens that
   * waited for a CPU another process held.
   */
  genTpsMedian: number;
  /** Generated text (detokenized; noise for a random-weight synthetic model). */
  text: string;
}

/** Callbacks and cancellation of an in-process run. */
export interface InProcessHooks {
  /** Aborts loading or generation; the run then rejects with an AbortError-like error. */
  signal?: AbortSignal;
  /** Phase changes: "load" (fraction 0..1), "prompt", "generate" (tokens so far). */
  onProgress?: (phase: "load" | "prompt" | "generate", done: number, total: number) => void;
}

/** Prefill passes measured (the fastest counts). */
export const PROMPT_REPETITIONS = 5;

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m]! : (a[m - 1]! + a[m]!) / 2;
}

function now(): number {
  return performance.now() / 1000;
}

/** Deterministic prompt ids spread over the vocabulary (random-weight models have no real text). */
function syntheticTokens(count: number, vocab: number, avoid: Set<number>): number[] {
  const out: number[] = [];
  let x = 12345;
  while (out.length < count) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const t = x % vocab;
    if (!avoid.has(t)) out.push(t);
  }
  return out;
}

/**
 * Loads the model with node-llama-cpp in this process, evaluates the prompt, generates
 * `genTokens` tokens greedily (ignoring end-of-text, so the count is exact) and reports speeds.
 * Frees the model and context before returning or throwing.
 */
export async function runNodeLlamaCpp(run: NodeLlamaCppRun, hooks: InProcessHooks = {}): Promise<GenerationResult> {
  let mod: typeof import("node-llama-cpp");
  try {
    mod = await import("node-llama-cpp");
  } catch (e) {
    throw new RuntimeMissingError("node-llama-cpp", "node-llama-cpp", nodeLlamaCppHint, { cause: e });
  }
  const signal = hooks.signal;
  signal?.throwIfAborted();
  const excluded = run.gpu === false ? await chooseCpuBackend(run.modelPath) : [];
  let llama: Awaited<ReturnType<typeof mod.getLlama>>;
  try {
    llama = await mod.getLlama({
      gpu: run.gpu,
      build: "never",
      maxThreads: run.threads,
      logLevel: mod.LlamaLogLevel.error,
      progressLogs: false,
    });
  } catch (e) {
    throw new RuntimeMissingError("node-llama-cpp", "node-llama-cpp", `${nodeLlamaCppHint} (${(e as Error).message})`, { cause: e });
  }
  const t0 = now();
  let model: Awaited<ReturnType<typeof llama.loadModel>> | undefined;
  let context: Awaited<ReturnType<NonNullable<typeof model>["createContext"]>> | undefined;
  try {
    try {
      model = await llama.loadModel({
        modelPath: run.modelPath,
        gpuLayers: run.gpu === false ? 0 : run.gpuLayers,
        useMmap: run.useMmap,
        loadSignal: signal,
        onLoadProgress: (p) => hooks.onProgress?.("load", p, 1),
      });
    } catch (e) {
      signal?.throwIfAborted();
      throw new LaunchError(`node-llama-cpp could not load ${run.modelPath}: ${(e as Error).message}`, { cause: e });
    }
    context = await model.createContext({
      contextSize: run.contextSize,
      batchSize: Math.min(run.batchSize, run.contextSize),
      threads: run.threads,
      sequences: 1,
      createSignal: signal,
    });
    const loadSeconds = now() - t0;
    signal?.throwIfAborted();

    const vocab = run.vocabSize ?? vocabFromMetadata(model.fileInfo.metadata);
    let prompt: number[];
    if (run.prompt !== undefined) {
      const text = model.tokenize(run.prompt) as number[];
      if (text.length === 0) throw new LaunchError("node-llama-cpp: the prompt tokenizes to no tokens");
      // A short prompt is repeated up to the workload's prompt length, so prefill speed is measured on that many tokens.
      prompt = [];
      while (prompt.length < Math.max(run.promptTokens, text.length)) prompt.push(text[prompt.length % text.length]!);
    } else {
      if (!(vocab > 0)) throw new LaunchError(`node-llama-cpp: ${run.modelPath} has no vocabulary size in its metadata`);
      const special = new Set<number>([model.tokens.bos, model.tokens.eos, model.tokens.eot].filter((t): t is NonNullable<typeof t> => t !== null) as number[]);
      prompt = syntheticTokens(run.promptTokens, vocab, special);
    }
    const sequence = context.getSequence();
    hooks.onProgress?.("prompt", 0, prompt.length);
    // All prompt tokens but the last are prefill; the last one starts generation. The prefill runs
    // PROMPT_REPETITIONS times from an empty cache and the fastest pass counts: a pass of a small
    // model takes milliseconds, and on a loaded machine most passes lose the CPU to another process
    // at some point; the fastest is the machine's speed (as timeit's minimum).
    const passes: number[] = [];
    for (let i = 0; i < PROMPT_REPETITIONS; i++) {
      if (i > 0) await sequence.clearHistory();
      const tp = now();
      if (prompt.length > 1) {
        await sequence.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1) as never);
      }
      passes.push(now() - tp);
      signal?.throwIfAborted();
    }
    const promptSeconds = Math.min(...passes);
    signal?.throwIfAborted();
    hooks.onProgress?.("prompt", prompt.length, prompt.length);

    const generated: number[] = [];
    const tg = now();
    // Each token's time, for the median: a token that waited for the CPU counts once, not 50 times.
    const tokenSeconds: number[] = [];
    let last = tg;
    for await (const token of sequence.evaluate(prompt.slice(-1) as never, { temperature: 0, yieldEogToken: true })) {
      const t = now();
      tokenSeconds.push(t - last);
      last = t;
      generated.push(token as number);
      hooks.onProgress?.("generate", generated.length, run.genTokens);
      if (generated.length >= run.genTokens || signal?.aborted) break;
    }
    const genSeconds = now() - tg;
    signal?.throwIfAborted();
    const prefillCount = Math.max(prompt.length - 1, 1);
    return {
      runtime: "node-llama-cpp",
      model: run.modelPath,
      backend: llama.gpu === false ? "cpu" : String(llama.gpu),
      cpuVariant: loadedCpuVariant(),
      cpuVariantsExcluded: excluded,
      loadSeconds: round(loadSeconds),
      promptTokens: prompt.length,
      promptSeconds: round(promptSeconds),
      promptTps: round(prefillCount / Math.max(promptSeconds, 1e-9)),
      genTokens: generated.length,
      genSeconds: round(genSeconds),
      genTps: round(generated.length / Math.max(genSeconds, 1e-9)),
      genTpsMedian: round(1 / Math.max(median(tokenSeconds.slice(1)), 1e-9)),
      text: model.detokenize(generated as never),
    };
  } finally {
    await context?.dispose();
    await model?.dispose();
  }
}

let backendChosen = false;

/**
 * Before the first getLlama of this process: an MLA model (attn_k_b / attn_v_b) gets the CPU
 * backend without the AMX variant (llama.cpp aborts with it; see node_llama_cpp_cpu.ts). The
 * backend is per process, so only the first model decides (the worker runs one).
 */
async function chooseCpuBackend(modelPath: string): Promise<string[]> {
  if (backendChosen) return [];
  backendChosen = true;
  let names: string[];
  try {
    names = readGgufHeader(modelPath, { maxStringArray: 0, maxNumericArray: 0 }).tensors.map((t) => t.name);
  } catch {
    return []; // node-llama-cpp reports an unreadable model itself
  }
  if (!needsNoAmxBackend(names)) return [];
  return (await loadCpuBackendWithout(AMX_CPU_VARIANTS))?.excluded ?? [];
}

function vocabFromMetadata(metadata: unknown): number {
  const m = metadata as Record<string, Record<string, unknown> | undefined> & { general?: { architecture?: string } };
  const tokens = (m?.tokenizer as { ggml?: { tokens?: unknown[] } } | undefined)?.ggml?.tokens;
  if (Array.isArray(tokens) && tokens.length > 0) return tokens.length;
  const arch = m?.general?.architecture;
  const n = arch ? Number(m[arch]?.vocab_size ?? 0) : 0;
  return Number.isFinite(n) ? n : 0;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
