// Golden argv/env per runtime adapter for hand-built plans.
import { test } from "node:test";
import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import type { Candidate, Plan, RuntimeSettings, ShimSettings } from "../core/types.ts";
import { LaunchError, RecipeSchemaError } from "../core/errors.ts";
import { adapterFor, ADAPTERS, canExpress, llamaBenchArgs, llamaProgramOf, ollamaModelfile, ollamaRequestOptions } from "../engine/runtimes/mod.ts";
import { transformersEntryPath } from "../engine/runtimes/transformers.ts";
import { nodeLlamaCppRun } from "../engine/runtimes/node_llama_cpp.ts";

const GiB = 1024 ** 3;
const SHIM = "/opt/spillway/libspillway.so";

function settings(over: Partial<RuntimeSettings> = {}): RuntimeSettings {
  return {
    contextLength: 8192,
    batch: 2048,
    ubatch: 512,
    threads: 16,
    gpuLayers: 49,
    cpuMoeLayers: 0,
    overrideTensors: [],
    kvOnHost: false,
    loadMode: "mmap",
    shim: null,
    ...over,
  };
}

function plan(s: RuntimeSettings, over: Partial<Plan> = {}, placements: Candidate["placements"] = []): Plan {
  const cand: Candidate = {
    id: "c1",
    label: "test",
    strategy: "experts_cpu",
    fits: true,
    memory: { vram: 11 * GiB, host_mapped: 0, host_cpu: 20 * GiB, disk: 0 },
    predicted: { prefillTps: 1000, decodeTps: 50, totalSeconds: 10 },
    settings: s,
    placements,
  };
  return {
    version: 1,
    model: { path: "/models/qwen3-30b-a3b-q8_0.gguf", architecture: "qwen3moe", quantization: "Q8_0", bytes: 32 * GiB },
    runtime: "llama.cpp",
    hardware: { name: "rtx-5070", source: "builtin" },
    workload: { objective: "custom", promptTokens: 4096, generatedTokens: 256 },
    candidates: [cand],
    chosen: "c1",
    reason: "test",
    settings: s,
    predicted: cand.predicted,
    memory: cand.memory,
    ...over,
  };
}

const shim: ShimSettings = {
  vramBudgetBytes: 11 * GiB,
  reserveBytes: GiB,
  minSpillBytes: 32 * 1024 * 1024,
  backing: "auto",
  report: "vram+host",
};

test("llama.cpp server: experts of 20 layers on the CPU, mmap, no shim", () => {
  const p = plan(settings({ cpuMoeLayers: 20 }));
  const spec = adapterFor("llama.cpp").toLaunchSpec(p, null);
  assertEquals(spec.argv, [
    "llama-server", "-m", "/models/qwen3-30b-a3b-q8_0.gguf", "-ngl", "49", "-ncmoe", "20", "-lm", "mmap",
    "-c", "8192", "-b", "2048", "-ub", "512", "-t", "16", "-fit", "off",
  ]);
  assertEquals(spec.env, {});
});

test("llama.cpp completion: overrides, KV on host, no mmap, prompt, recipe args and env last", () => {
  const p = plan(settings({
    gpuLayers: 10,
    kvOnHost: true,
    loadMode: "none",
    overrideTensors: [{ pattern: "blk\\.(1|2)\\.ffn_.*_exps", device: "CPU" }, { pattern: "output", device: "CUDA0" }],
  }));
  const spec = adapterFor("llamacpp").toLaunchSpec(p, { program: "completion", prompt: "Hi", args: ["--seed", "1"], env: { X: "1" } });
  assertEquals(spec.argv, [
    "llama-completion", "-m", "/models/qwen3-30b-a3b-q8_0.gguf", "-ngl", "10",
    "-ot", "blk\\.(1|2)\\.ffn_.*_exps=CPU,output=CUDA0", "-nkvo", "-lm", "none",
    "-c", "8192", "-b", "2048", "-ub", "512", "-t", "16", "-fit", "off",
    "-n", "256", "-p", "Hi", "-no-cnv", "--seed", "1",
  ]);
  assertEquals(spec.env, { X: "1" });
});

test("llama.cpp under the shim: LD_PRELOAD and SPILLWAY_* as byte counts; custom binary path", () => {
  const p = plan(settings({ shim: { ...shim, placementMapFile: "/tmp/p.json", log: "info", hostLimitBytes: 40 * GiB } }));
  const spec = adapterFor("llama.cpp").toLaunchSpec(p, { binary: "/opt/llama/bin/llama-server" }, { shimPath: SHIM });
  assertEquals(spec.argv[0], "/opt/llama/bin/llama-server");
  assertEquals(spec.env, {
    LD_PRELOAD: SHIM,
    SPILLWAY_VRAM_BUDGET: String(11 * GiB),
    SPILLWAY_RESERVE: String(GiB),
    SPILLWAY_MIN_SPILL: String(32 * 1024 * 1024),
    SPILLWAY_HOST_LIMIT: String(40 * GiB),
    SPILLWAY_BACKING: "auto",
    SPILLWAY_REPORT: "vram+host",
    SPILLWAY_PLACEMENT: "/tmp/p.json",
    SPILLWAY_LOG: "info",
  });
});

test("llama-bench: comma-free single configuration, ';' between overrides, JSON output", () => {
  const p = plan(settings({ cpuMoeLayers: 34, kvOnHost: true, overrideTensors: [{ pattern: "a", device: "CPU" }, { pattern: "b", device: "CPU" }] }));
  assertEquals(llamaBenchArgs(p, { promptTokens: 4096, genTokens: 256, repetitions: 3 }), [
    "-m", "/models/qwen3-30b-a3b-q8_0.gguf", "-p", "4096", "-n", "256", "-ngl", "49", "-ncmoe", "34",
    "-ot", "a=CPU;b=CPU", "-nkvo", "1", "-lm", "mmap", "-b", "2048", "-ub", "512", "-t", "16", "-r", "3", "-o", "json",
  ]);
  const spec = adapterFor("llama.cpp").toLaunchSpec(p, { program: "bench" });
  assertEquals(spec.argv[0], "llama-bench");
  assert(spec.argv.includes("4096") && spec.argv.includes("256"), "bench uses the plan's workload counts");
});

test("llama.cpp program detection by binary name", () => {
  assertEquals(llamaProgramOf("/usr/local/bin/llama-server"), "server");
  assertEquals(llamaProgramOf("llama-bench"), "bench");
  assertEquals(llamaProgramOf("python3"), null);
});

test("vLLM: memory utilization, CPU offload and KV offload in GiB from the plan", () => {
  const p = plan(
    settings({ gpuMemoryUtilization: 0.92, cpuOffloadBytes: 6.5 * GiB, kvOnHost: true, contextLength: 16384 }),
    { runtime: "vllm", model: { path: "/models/qwen3/model-00001-of-00004.safetensors", architecture: "qwen3moe", quantization: "BF16", bytes: 60 * GiB } },
    [{ class: "kv_cache", tier: "host_cpu", bytes: 3 * GiB }, { class: "kv_cache", tier: "vram", bytes: GiB }],
  );
  const spec = adapterFor("vllm").toLaunchSpec(p, null);
  assertEquals(spec.argv, [
    "vllm", "serve", "/models/qwen3", "--max-model-len", "16384", "--gpu-memory-utilization", "0.92",
    "--cpu-offload-gb", "6.5", "--kv-offloading-backend", "native", "--kv-offloading-size", "3",
    "--max-num-batched-tokens", "2048",
  ]);
  assertEquals(spec.env, {});
  const named = adapterFor("vllm").toLaunchSpec(p, { modelRef: "Qwen/Qwen3-30B-A3B" });
  assertEquals(named.argv[2], "Qwen/Qwen3-30B-A3B");
});

test("Ollama: serve with OLLAMA_* and the shim; request options and Modelfile carry num_gpu", () => {
  const p = plan(settings({ gpuLayers: 30, threads: 8, loadMode: "none", shim }), { runtime: "ollama" });
  const spec = adapterFor("ollama").toLaunchSpec(p, null, { shimPath: SHIM });
  assertEquals(spec.argv, ["ollama", "serve"]);
  assertEquals(spec.env.OLLAMA_CONTEXT_LENGTH, "8192");
  assertEquals(spec.env.OLLAMA_GPU_OVERHEAD, "0");
  assertEquals(spec.env.LD_PRELOAD, SHIM);
  assertEquals(spec.env.SPILLWAY_REPORT, "vram+host");
  assertEquals(ollamaRequestOptions(p), { num_gpu: 30, num_ctx: 8192, num_batch: 2048, num_thread: 8, use_mmap: false });
  assertEquals(
    ollamaModelfile(p),
    "FROM /models/qwen3-30b-a3b-q8_0.gguf\nPARAMETER num_gpu 30\nPARAMETER num_ctx 8192\nPARAMETER num_batch 2048\nPARAMETER num_thread 8\nPARAMETER use_mmap false\n",
  );
});

test("transformers: native offload passes max_memory; shim run goes to cuda", () => {
  const model = { path: "/models/llama/config.json", architecture: "llama", quantization: "BF16", bytes: 16 * GiB };
  const native = plan(settings({ maxMemory: { "0": 10 * GiB, cpu: 40 * GiB }, threads: 4 }), { runtime: "transformers", model });
  const a = adapterFor("transformers").toLaunchSpec(native, null);
  assertEquals(a.argv, [
    "python3", transformersEntryPath(), "--model", "/models/llama", "--prompt-tokens", "4096", "--gen-tokens", "256",
    "--threads", "4", "--device-map", "auto", "--max-memory", JSON.stringify({ "0": 10 * GiB, cpu: 40 * GiB }),
  ]);
  assertEquals(a.env, {});
  const shimmed = plan(settings({ shim, threads: 4 }), { runtime: "transformers", model });
  const b = adapterFor("transformers").toLaunchSpec(shimmed, { python: "/venv/bin/python" }, { shimPath: SHIM });
  assertEquals(b.argv.slice(0, 3), ["/venv/bin/python", transformersEntryPath(), "--model"]);
  assertEquals(b.argv.slice(-2), ["--device", "cuda"]);
  assertEquals(b.env.LD_PRELOAD, SHIM);
  assertMatch(transformersEntryPath(), /engine\/runtimes\/python\/spillway_transformers\.py$/);
});

test("node-llama-cpp: in-process options from the plan (CPU when no GPU layers)", () => {
  const p = plan(settings({ gpuLayers: 0, threads: 2, contextLength: 256, batch: 512 }), {
    runtime: "node-llama-cpp",
    workload: { objective: "custom", promptTokens: 200, generatedTokens: 100 },
  });
  assertEquals(nodeLlamaCppRun(p, { prompt: "hello" }), {
    modelPath: "/models/qwen3-30b-a3b-q8_0.gguf",
    gpu: false,
    gpuLayers: 0,
    threads: 2,
    contextSize: 301, // grown to hold prompt + generation
    batchSize: 512,
    useMmap: true,
    promptTokens: 200,
    genTokens: 100,
    prompt: "hello",
  });
  const spec = adapterFor("node-llama-cpp").toLaunchSpec(p, null);
  assertEquals(spec.env, {});
  assertMatch(spec.argv.join(" "), /^node-llama-cpp --model \S+ --gpu false --gpu-layers 0 --threads 2/);
});

test("command: recipe argv with the shim; empty command is an error", () => {
  const p = plan(settings({ shim }), { runtime: "command" });
  const spec = adapterFor("command").toLaunchSpec(p, { command: ["./train.py", "--epochs", "1"], args: ["-v"] }, { shimPath: SHIM });
  assertEquals(spec.argv, ["./train.py", "--epochs", "1", "-v"]);
  assertEquals(spec.env.LD_PRELOAD, SHIM);
  assertThrows(() => adapterFor("command").toLaunchSpec(p, { command: [] }), LaunchError, "command");
});

test("adapterFor: unknown runtime names the known ones", () => {
  const e = assertThrows(() => adapterFor("tensorrt", "r.json5"), RecipeSchemaError);
  assertMatch(e.message, /r\.json5: runtime: unknown runtime 'tensorrt'; known: llama\.cpp, vllm/);
});

test("capabilities: only what the runtime can express", () => {
  const base = plan(settings({ cpuMoeLayers: 10 })).candidates[0]!;
  assert(canExpress(ADAPTERS["llama.cpp"].capabilities, base));
  assert(!canExpress(ADAPTERS.vllm.capabilities, base), "vLLM has no -ncmoe");
  assert(!canExpress(ADAPTERS.ollama.capabilities, base), "Ollama has no experts_cpu");
  const zc: Candidate = { ...base, strategy: "zero_copy", settings: settings({ shim }) };
  assert(canExpress(ADAPTERS.command.capabilities, zc));
  assert(!canExpress(ADAPTERS["node-llama-cpp"].capabilities, zc), "in-process runtime cannot take the shim");
  for (const a of Object.values(ADAPTERS)) assert(a.binaryHint.hint.length > 10, `${a.name} has a hint`);
});

test("planBuild: llama.cpp's hybrid plans need the patched build (its switches, programs and hint); other plans and runtimes need none", () => {
  const llama = adapterFor("llama.cpp");
  const stock = settings({ cpuMoeLayers: 30, loadMode: "none" });
  assertEquals(llama.planBuild!(stock), null);
  const build = llama.planBuild!(settings({ cpuMoeLayers: 30, loadMode: "none", hybridGpuFraction: 0.375, hybridGpuRead: "copy" }));
  assert(build !== null);
  assertEquals(build.env, { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.375", LLAMA_MOE_HYBRID_GPU_READ: "copy" });
  assertMatch(build.hint(), /runtimes\/llama\.cpp\/build\.sh/);
  const bench = build.program("llama-bench");
  assert(bench === null || bench.endsWith("/llama-bench"), String(bench));
  for (const name of Object.keys(ADAPTERS) as (keyof typeof ADAPTERS)[]) {
    if (name !== "llama.cpp") assertEquals(ADAPTERS[name].planBuild, undefined, name);
  }
});
