/**
 * The recipe schema, written once as a small description language from which both the validator
 * (field paths, allowed values, "did you mean" for unknown keys) and the JSON Schema file for
 * editors (engine/recipe/recipe.schema.json, checked by a test to match) are derived.
 *
 * @module
 */
import { RUNTIME_NAMES } from "./types.ts";
import { KNOWN_MODELS, KNOWN_QUANTS } from "./models.ts";

/** One node of the schema description. */
export type Spec =
  /** `ignoreCase`: the enum matches in any case and the value becomes the enum's spelling. */
  | { kind: "string"; enum?: readonly string[]; ignoreCase?: boolean; description?: string }
  | { kind: "number"; integer?: boolean; min?: number; max?: number; description?: string }
  /** Bytes: a number, or a string such as `12G`, `512M`, `32GB`. */
  | { kind: "size"; description?: string }
  | { kind: "boolean"; description?: string }
  | { kind: "null"; description?: string }
  | { kind: "array"; items: Spec; minItems?: number; description?: string }
  | { kind: "object"; fields: Record<string, Spec>; required?: readonly string[]; description?: string }
  /** Object with arbitrary keys, all values of one spec. */
  | { kind: "record"; values: Spec; description?: string }
  /** Alternatives; each must accept a different JSON type (string, number, object, ...). */
  | { kind: "union"; of: readonly Spec[]; description?: string };

const str = (description?: string, values?: readonly string[]): Spec => ({ kind: "string", enum: values, description });
const int = (min: number, max: number, description?: string): Spec => ({ kind: "number", integer: true, min, max, description });
const num = (min: number, description?: string): Spec => ({ kind: "number", min, description });
const size = (description?: string): Spec => ({ kind: "size", description });
const strings = (description?: string): Spec => ({ kind: "array", items: { kind: "string" }, description });

const GPU_FIELDS: Record<string, Spec> = {
  name: str("GPU name"),
  vramBytes: size("total VRAM"),
  freeVramBytes: size("free VRAM the plan fits against"),
  vramGBps: num(0, "VRAM read bandwidth, GB/s"),
  fp16Tflops: num(0, "dense fp16 tensor throughput, TFLOP/s"),
  pcie: { kind: "object", fields: { gen: int(1, 7), width: int(1, 32) } },
  h2dGBps: num(0, "pinned host-to-device copy bandwidth, GB/s"),
  d2hGBps: num(0, "device-to-host copy bandwidth, GB/s"),
  zeroCopyGBps: num(0, "GPU reading host-mapped memory, GB/s"),
  driver: str(),
  computeCapability: str(),
};

const HOST_FIELDS: Record<string, Spec> = {
  ramBytes: size("total RAM"),
  availableRamBytes: size("RAM available to the run"),
  ramGBps: num(0, "RAM read bandwidth with all cores, GB/s"),
  cpuCores: int(1, 4096, "CPU cores"),
  cpuName: str(),
  cpuGflops: num(0, "quantized matmul throughput of all cores, GFLOP/s"),
};

/** The whole recipe. */
export const RECIPE_SPEC: Spec = {
  kind: "object",
  description: "A spillway recipe: which model, which runtime, the workload, placement policy and hardware.",
  required: ["model", "runtime"],
  fields: {
    $schema: str("path or URL of this schema, for editors"),
    name: str("short name of the recipe"),
    description: str("what the recipe is for"),
    model: {
      kind: "object",
      description: "the model: `path` to a file, or a known `id` with `quant`",
      fields: {
        path: str("model file (GGUF, safetensors or its index); relative to the recipe's directory; ~ expands"),
        id: str("known model id", Object.keys(KNOWN_MODELS)),
        quant: { ...str("quantization of a known id (any case: Q8_0 = q8_0)", KNOWN_QUANTS), ignoreCase: true } as Spec,
        synth: { kind: "boolean", description: "`spillway run` synthesizes the file (random weights) when missing" },
      },
    },
    runtime: {
      kind: "union",
      description: "the runtime: its name, or an object with its options",
      of: [
        str("runtime name", RUNTIME_NAMES),
        {
          kind: "object",
          required: ["name"],
          fields: {
            name: str("runtime name", RUNTIME_NAMES),
            binary: str("program to run instead of the default"),
            program: str("llama.cpp program", ["server", "cli", "completion", "bench"]),
            args: strings("extra arguments appended to the generated ones"),
            env: { kind: "record", values: { kind: "string" }, description: "extra environment" },
            command: { kind: "array", items: { kind: "string" }, minItems: 1, description: "argv for runtime `command`" },
            prompt: str("prompt for one-shot runs"),
            modelRef: str("model name for runtimes that address models by name (Ollama tag, HF repo id)"),
            python: str("Python interpreter for transformers"),
          },
        },
      ],
    },
    context: int(16, 16_777_216, "context length, tokens"),
    batch: int(1, 1_048_576, "logical batch, tokens (llama.cpp -b)"),
    ubatch: int(1, 1_048_576, "physical micro-batch, tokens (llama.cpp -ub); omit to let the planner choose"),
    threads: int(1, 4096, "CPU threads; omit for all cores"),
    workload: {
      kind: "union",
      description: "`chat` (decode-heavy), `rag` (prefill-heavy) or explicit token counts",
      of: [
        str("workload objective", ["chat", "rag"]),
        {
          kind: "object",
          required: ["promptTokens", "generatedTokens"],
          fields: {
            promptTokens: int(1, 16_777_216, "prompt tokens per request"),
            generatedTokens: int(0, 16_777_216, "generated tokens per request"),
          },
        },
      ],
    },
    placement: {
      kind: "union",
      description: "`auto`, or constraints on where things go",
      of: [
        str("placement policy", ["auto"]),
        {
          kind: "object",
          fields: {
            kv: str("KV cache location", ["auto", "vram", "host"]),
            experts: str("MoE expert location", ["auto", "vram", "cpu"]),
            cpuLayers: { kind: "array", items: int(0, 100_000), description: "layers that must run on the CPU" },
            vramCap: size("most VRAM the plan may use"),
            ramCap: size("most host RAM the plan may use"),
            reserve: size("VRAM kept free (CUDA context, late allocations)"),
          },
        },
      ],
    },
    kvCache: {
      kind: "object",
      description: "KV cache element types the planner may choose from (default: f16 and q8_0; q4_0 only when listed)",
      required: ["types"],
      fields: {
        types: {
          kind: "array",
          minItems: 1,
          items: str("KV cache type (llama.cpp -ctk/-ctv; quantized types run with flash attention)", ["f16", "q8_0", "q4_0"]),
          description: "allowed types, e.g. [\"f16\", \"q8_0\", \"q4_0\"]",
        },
      },
    },
    promptCache: {
      kind: "object",
      description: "llama-server prompt cache: a directory where clients save and restore slots (POST /slots/0?action=save|restore)",
      required: ["dir"],
      fields: {
        dir: str("directory for saved slots (--slot-save-path); relative to the recipe's directory; ~ expands; created 0700"),
        reuse: int(0, 1_048_576, "least chunk of cached tokens reused by KV shifting (--cache-reuse); 0: off (default 256)"),
      },
    },
    hardware: {
      kind: "union",
      description: "`probe`, a built-in profile name, or explicit numbers over a profile",
      of: [
        str("`probe` or a built-in profile name"),
        {
          kind: "object",
          fields: {
            profile: str("base profile (`probe` or a built-in name); default: probe"),
            fallback: str("profile to plan for when probing finds no GPU"),
            name: str("name of the resulting profile"),
            gpu: { kind: "union", of: [{ kind: "null" }, { kind: "object", fields: GPU_FIELDS }] },
            host: { kind: "object", fields: HOST_FIELDS },
            disk: { kind: "object", fields: { readGBps: num(0, "disk read bandwidth, GB/s") } },
            gpus: {
              kind: "array",
              minItems: 1,
              description: "every local GPU, in CUDA order (the first is also `gpu`); a probe finds them by NVML",
              items: {
                kind: "object",
                required: ["vramBytes"],
                fields: {
                  name: GPU_FIELDS.name!,
                  vramBytes: GPU_FIELDS.vramBytes!,
                  freeVramBytes: GPU_FIELDS.freeVramBytes!,
                  vramGBps: GPU_FIELDS.vramGBps!,
                  fp16Tflops: GPU_FIELDS.fp16Tflops!,
                  pcie: GPU_FIELDS.pcie!,
                },
              },
            },
            nodes: {
              kind: "array",
              minItems: 1,
              description: "llama.cpp rpc-servers to split the model over (llama.cpp --rpc); the RPC protocol has no authentication",
              items: {
                kind: "object",
                required: ["rpc"],
                fields: {
                  rpc: str("host:port the rpc-server listens on, e.g. \"192.168.1.20:50052\""),
                  start: { kind: "boolean", description: "spillway run starts it on this host, bound to the endpoint's host (keep 127.0.0.1 unless other hosts must reach it)" },
                  binary: str("rpc-server program for start (default: spillway's build, else rpc-server in PATH)"),
                  threads: int(1, 4096, "threads of a started CPU rpc-server (-t)"),
                  linkGBps: num(0, "network bandwidth to it, GB/s (default 1.25, loopback 5; spillway bench --rpc measures it)"),
                  rttMs: num(0, "round trip to it, ms (default 0.2, loopback 0.05)"),
                  devices: {
                    kind: "array",
                    minItems: 1,
                    description: "its devices; absent: asked from the server when planning",
                    items: {
                      kind: "object",
                      required: ["memoryBytes"],
                      fields: {
                        kind: str("gpu (default) or cpu", ["gpu", "cpu"]),
                        name: str("device name (a known GPU name gives its bandwidth)"),
                        memoryBytes: size("device memory"),
                        freeBytes: size("free memory the plan fits against (default: all)"),
                        memGBps: num(0, "memory read bandwidth, GB/s"),
                        tflops: num(0, "matmul throughput, TFLOP/s"),
                      },
                    },
                  },
                },
              },
            },
          },
        },
      ],
    },
  },
};

/** JSON Schema (draft 2020-12) of a spec, for editors. */
export function toJsonSchema(spec: Spec, root = true): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (root) {
    out.$schema = "https://json-schema.org/draft/2020-12/schema";
    out.$id = "https://spillway.dev/recipe.schema.json";
    out.title = "spillway recipe";
  }
  if (spec.description !== undefined) out.description = spec.description;
  switch (spec.kind) {
    case "string":
      out.type = "string";
      // Case-insensitive enums list both spellings (JSON Schema has no case-insensitive enum).
      if (spec.enum !== undefined) out.enum = spec.ignoreCase ? [...new Set(spec.enum.flatMap((e) => [e, e.toUpperCase()]))] : [...spec.enum];
      break;
    case "number":
      out.type = spec.integer ? "integer" : "number";
      if (spec.min !== undefined) out.minimum = spec.min;
      if (spec.max !== undefined) out.maximum = spec.max;
      break;
    case "size":
      out.oneOf = [
        { type: "number", minimum: 0 },
        { type: "string", pattern: "^\\s*\\d+(\\.\\d+)?\\s*([kKmMgGtT]([iI]?[bB])?|[bB])?\\s*$" },
      ];
      break;
    case "boolean":
      out.type = "boolean";
      break;
    case "null":
      out.type = "null";
      break;
    case "array":
      out.type = "array";
      out.items = toJsonSchema(spec.items, false);
      if (spec.minItems !== undefined) out.minItems = spec.minItems;
      break;
    case "object":
      out.type = "object";
      out.properties = Object.fromEntries(Object.entries(spec.fields).map(([k, v]) => [k, toJsonSchema(v, false)]));
      if (spec.required !== undefined && spec.required.length > 0) out.required = [...spec.required];
      out.additionalProperties = false;
      break;
    case "record":
      out.type = "object";
      out.additionalProperties = toJsonSchema(spec.values, false);
      break;
    case "union":
      out.oneOf = spec.of.map((s) => toJsonSchema(s, false));
      break;
  }
  return out;
}
