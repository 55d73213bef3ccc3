/**
 * The benchmark matrix (JSON5): models (synthetic shapes + quantization), free-VRAM levels held by
 * the ballast, workloads (prompt / generated tokens), methods (how each runtime is configured), and
 * the optional PyTorch and llama-server (`spillway run`) sections.
 * `parseMatrix` validates everything and names the file and field of any error.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import JSON5 from "json5";
import { RecipeSchemaError, RecipeSyntaxError } from "../../core/errors.ts";

/** A synthetic model of a known shape (engine/model/shapes.ts). */
export interface MatrixModel {
  id: string;
  shape: string;
  quant: "Q8_0" | "Q4_0" | "F16";
}

/**
 * Prompt and generated token counts; `endToEnd` adds llama-bench's combined `-pg` test; `depth`
 * (llama-bench -d) fills the KV cache with that many tokens before each test, so pp and tg are
 * measured at a long context (issue 21).
 */
export interface MatrixWorkload {
  id: string;
  prompt: number;
  gen: number;
  endToEnd: boolean;
  depth: number;
}

/** How a llama.cpp method is configured. */
export type LlamaConfig =
  /** All layers on the GPU, no ballast: the speed and output reference. */
  | { kind: "all-vram" }
  /** Whole layers on the CPU: -ngl N with the largest N that fits the free VRAM. */
  | { kind: "naive-layers"; reserveGiB: number }
  /**
   * llama.cpp's own fit choice (llama-fit-params), other settings left at their defaults; `flags`
   * (e.g. `-lm none`) go to llama-fit-params too, so the fit is sized for them, and are appended to
   * its choice; `env` is set (e.g. the patched build's switches).
   */
  | { kind: "fit"; flags: string[]; env: Record<string, string> }
  /** Fixed native flags (hand-tuned), plus optional environment (e.g. the patched build's switches). */
  | { kind: "flags"; flags: string[]; env: Record<string, string> }
  /** All layers on the GPU under the shim (LD_PRELOAD), plus optional flags and shim environment. */
  | { kind: "shim"; flags: string[]; env: Record<string, string> }
  /**
   * spillway's plan (`spillway plan --json`, converted by the llama.cpp adapter); `kvTypes` becomes
   * the recipe's `kvCache.types` (absent: the recipe default, f16 and q8_0).
   */
  | { kind: "planned"; objective: "chat" | "rag" | "custom"; autotune: boolean; kvTypes?: ("f16" | "q8_0" | "q4_0")[] };

/** How output is checked against the all-in-VRAM reference. */
export interface CorrectnessRule {
  /** `exact`: same kernels, identical logits expected; `close`: other arithmetic, thresholds below. */
  mode: "exact" | "close" | "none";
  /** Least share of positions whose top token agrees with the reference (close mode), 0..1. */
  minSameTop: number;
  /** Largest mean KL divergence from the reference (close mode). */
  maxKld: number;
}

/** One llama.cpp method. */
export interface LlamaMethod {
  id: string;
  label: string;
  runtime: "llama.cpp";
  /** Whether the ballast holds VRAM for this method (false only for the reference). */
  ballast: boolean;
  config: LlamaConfig;
  check: CorrectnessRule;
  /**
   * Flags added to this method's logits check (llama-perplexity) after its own, e.g. `-ub 1` so the
   * check runs the one-token (decode) path that a decode-only strategy changes.
   */
  checkFlags: string[];
  /**
   * Whether this method runs the workload's end-to-end test (llama-bench -pg); default: the
   * workload's `endToEnd`. Slow methods that no ratio needs end to end can leave it out to save time.
   */
  endToEnd: boolean | null;
  /**
   * CPU threads (-t) for this method's runs and check, where it differs from the matrix's: the
   * hybrid split's launch thread needs a core of its own (bench/results/2026-12-07-hybrid-threads).
   */
  threads: number | null;
}

/** The PyTorch comparison: a random-init transformers model of a real shape. */
export interface TorchSection {
  shape: string;
  dtype: "bf16" | "fp16";
  prompt: number;
  gen: number;
  methods: ("all-vram" | "accelerate" | "shim")[];
  /** Seconds each method may take. */
  timeoutS: number;
}

/** How a llama-server method of the server section is configured. */
export type ServerConfig =
  /** `-ngl 99`, no ballast: the speed reference and the reference tokens. */
  | { kind: "all-vram" }
  /** llama-server with only -m -c -t --port --host: its own defaults (fit on). */
  | { kind: "default" }
  /** The default command plus fixed flags (hand-tuned). */
  | { kind: "flags"; flags: string[] }
  /** `spillway run <recipe> -- --port P --host 127.0.0.1`: the plan applied by spillway itself. */
  | { kind: "spillway-run" };

/** One llama-server method. */
export interface ServerMethod {
  id: string;
  label: string;
  /** Whether the ballast holds VRAM for this method (false only for the reference). */
  ballast: boolean;
  config: ServerConfig;
}

/**
 * Measurements through llama-server's HTTP API (the real `spillway run` path): each
 * method starts a server, waits for /health, sends one warm-up and `repetitions` measured
 * /completion requests of `prompt` token ids + `gen` generated tokens, then stops it.
 */
export interface ServerSection {
  /** Id of the model (models[].id) the section runs; the first model by default. */
  model: string;
  prompt: number;
  gen: number;
  repetitions: number;
  /** Seconds each method may take in all (start, load, requests, stop). */
  timeoutS: number;
  /** Port every server listens on (127.0.0.1), one at a time. */
  port: number;
  /** Leading generated tokens that must equal the reference's for the check to pass. */
  agreeTokens: number;
  /** Arguments added to every server's command line (spillway run: after `--`). */
  args: string[];
  methods: ServerMethod[];
  /**
   * Issue 21: after the measured requests, time restoring a saved `prompt`-token slot against
   * recomputing it (bench/harness/slot_restore.ts); servers get `--slot-save-path` (spillway run:
   * the recipe's `promptCache`). Null: not measured.
   */
  slotRestore: { prompt: number } | null;
}

/** A whole matrix. */
export interface Matrix {
  file: string;
  name: string;
  models: MatrixModel[];
  /** GiB of VRAM left free by the ballast; each level is one row group. */
  freeVramGiB: number[];
  workloads: MatrixWorkload[];
  methods: LlamaMethod[];
  torch: TorchSection | null;
  server: ServerSection | null;
  /** llama-bench -r. */
  repetitions: number;
  /** CPU threads (-t). */
  threads: number;
  /** Seconds each llama.cpp step may take. */
  stepTimeoutS: number;
  /** Text fed to llama-perplexity for the logits check (bytes become tokens). */
  checkContext: number;
  checkChunks: number;
}

type Obj = Record<string, unknown>;

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

class Checker {
  constructor(readonly file: string) {}
  fail(path: string, detail: string): never {
    throw new RecipeSchemaError(this.file, path, detail);
  }
  obj(v: unknown, path: string): Obj {
    if (typeof v !== "object" || v === null || Array.isArray(v)) this.fail(path, "must be an object");
    return v as Obj;
  }
  arr(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) this.fail(path, "must be an array");
    return v as unknown[];
  }
  str(v: unknown, path: string): string {
    if (typeof v !== "string" || v === "") this.fail(path, "must be a non-empty string");
    return v as string;
  }
  num(v: unknown, path: string, min = 0): number {
    if (typeof v !== "number" || !Number.isFinite(v) || v < min) this.fail(path, `must be a number >= ${min}`);
    return v as number;
  }
  int(v: unknown, path: string, min = 0): number {
    const n = this.num(v, path, min);
    if (!Number.isInteger(n)) this.fail(path, "must be an integer");
    return n;
  }
  bool(v: unknown, path: string): boolean {
    if (typeof v !== "boolean") this.fail(path, "must be true or false");
    return v as boolean;
  }
  oneOf<T extends string>(v: unknown, path: string, options: readonly T[]): T {
    if (typeof v !== "string" || !options.includes(v as T)) this.fail(path, `must be one of ${options.join(", ")}`);
    return v as T;
  }
  strings(v: unknown, path: string): string[] {
    return this.arr(v, path).map((x, i) => this.str(x, `${path}[${i}]`));
  }
  keys(o: Obj, path: string, allowed: readonly string[]): void {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) this.fail(`${path}.${k}`.replace(/^\./, ""), `unknown field (known: ${allowed.join(", ")})`);
  }
  /** An id: letters, digits, '.', '_' and '-' (it names results and SPILLWAY_BENCH_ONLY entries). */
  id(v: unknown, path: string): string {
    const id = this.str(v, path);
    if (!ID.test(id)) this.fail(path, "letters, digits, '.', '_' and '-' only");
    return id;
  }
  unique(ids: string[], path: string): void {
    const seen = new Set<string>();
    for (const id of ids) {
      if (seen.has(id)) this.fail(path, `duplicate id '${id}'`);
      seen.add(id);
    }
  }
}

function parseCheck(c: Checker, v: unknown, path: string, dflt: CorrectnessRule["mode"]): CorrectnessRule {
  if (v === undefined) return { mode: dflt, minSameTop: 0.9, maxKld: 0.05 };
  if (typeof v === "string") return { mode: c.oneOf(v, path, ["exact", "close", "none"] as const), minSameTop: 0.9, maxKld: 0.05 };
  const o = c.obj(v, path);
  c.keys(o, path, ["mode", "minSameTop", "maxKld"]);
  return {
    mode: c.oneOf(o.mode, `${path}.mode`, ["exact", "close", "none"] as const),
    minSameTop: o.minSameTop === undefined ? 0.9 : c.num(o.minSameTop, `${path}.minSameTop`),
    maxKld: o.maxKld === undefined ? 0.05 : c.num(o.maxKld, `${path}.maxKld`),
  };
}

function parseMethod(c: Checker, v: unknown, path: string): LlamaMethod {
  const o = c.obj(v, path);
  c.keys(o, path, ["id", "label", "runtime", "ballast", "config", "flags", "env", "reserveGiB", "objective", "autotune", "kvTypes", "check", "checkFlags", "endToEnd", "threads"]);
  const id = c.id(o.id, `${path}.id`);
  if (o.runtime !== undefined) c.oneOf(o.runtime, `${path}.runtime`, ["llama.cpp"] as const);
  const kind = c.oneOf(o.config, `${path}.config`, ["all-vram", "naive-layers", "fit", "flags", "shim", "planned"] as const);
  let config: LlamaConfig;
  const flags = o.flags === undefined ? [] : c.strings(o.flags, `${path}.flags`);
  const env: Record<string, string> = {};
  if (o.env !== undefined) {
    if (kind !== "flags" && kind !== "shim" && kind !== "fit") c.fail(`${path}.env`, `only a 'flags', 'fit' or 'shim' method takes env (this one is '${kind}')`);
    const e = c.obj(o.env, `${path}.env`);
    for (const [k, val] of Object.entries(e)) env[k] = c.str(val, `${path}.env.${k}`);
  }
  switch (kind) {
    case "all-vram":
      config = { kind };
      break;
    case "naive-layers":
      config = { kind, reserveGiB: o.reserveGiB === undefined ? 1.5 : c.num(o.reserveGiB, `${path}.reserveGiB`) };
      break;
    case "fit":
      config = { kind, flags, env };
      break;
    case "flags":
      if (flags.length === 0) c.fail(`${path}.flags`, "a 'flags' method needs at least one flag");
      config = { kind, flags, env };
      break;
    case "shim":
      config = { kind, flags, env };
      break;
    case "planned":
      config = {
        kind,
        objective: o.objective === undefined ? "custom" : c.oneOf(o.objective, `${path}.objective`, ["chat", "rag", "custom"] as const),
        // autotune: `spillway plan --autotune` measures the top candidates with llama-bench first.
        autotune: o.autotune === undefined ? false : c.bool(o.autotune, `${path}.autotune`),
      };
      if (o.kvTypes !== undefined) {
        const kv = c.arr(o.kvTypes, `${path}.kvTypes`).map((t, i) => c.oneOf(t, `${path}.kvTypes[${i}]`, ["f16", "q8_0", "q4_0"] as const));
        if (kv.length === 0) c.fail(`${path}.kvTypes`, "needs at least one type");
        config.kvTypes = kv;
      }
      break;
  }
  const ballast = o.ballast === undefined ? kind !== "all-vram" : c.bool(o.ballast, `${path}.ballast`);
  return {
    id,
    label: o.label === undefined ? id : c.str(o.label, `${path}.label`),
    runtime: "llama.cpp",
    ballast,
    config,
    check: parseCheck(c, o.check, `${path}.check`, kind === "shim" ? "exact" : kind === "all-vram" ? "none" : "close"),
    checkFlags: o.checkFlags === undefined ? [] : c.strings(o.checkFlags, `${path}.checkFlags`),
    endToEnd: o.endToEnd === undefined ? null : c.bool(o.endToEnd, `${path}.endToEnd`),
    threads: o.threads === undefined ? null : c.int(o.threads, `${path}.threads`, 1),
  };
}

function parseServerMethod(c: Checker, v: unknown, path: string): ServerMethod {
  const o = c.obj(v, path);
  c.keys(o, path, ["id", "label", "config", "flags", "ballast"]);
  const id = c.id(o.id, `${path}.id`);
  const kind = c.oneOf(o.config, `${path}.config`, ["all-vram", "default", "flags", "spillway-run"] as const);
  let config: ServerConfig;
  if (kind === "flags") {
    const flags = o.flags === undefined ? [] : c.strings(o.flags, `${path}.flags`);
    if (flags.length === 0) c.fail(`${path}.flags`, "a 'flags' method needs at least one flag");
    config = { kind, flags };
  } else {
    if (o.flags !== undefined) c.fail(`${path}.flags`, `only a 'flags' method takes flags (this one is '${kind}'; use server.args for every method)`);
    config = { kind };
  }
  return {
    id,
    label: o.label === undefined ? id : c.str(o.label, `${path}.label`),
    ballast: o.ballast === undefined ? kind !== "all-vram" : c.bool(o.ballast, `${path}.ballast`),
    config,
  };
}

function parseSlotRestore(c: Checker, v: unknown): { prompt: number } {
  const o = c.obj(v, "server.slotRestore");
  c.keys(o, "server.slotRestore", ["prompt"]);
  return { prompt: c.int(o.prompt ?? 16384, "server.slotRestore.prompt", 16) };
}

function parseServer(c: Checker, v: unknown, models: MatrixModel[]): ServerSection {
  const s = c.obj(v, "server");
  c.keys(s, "server", ["model", "prompt", "gen", "repetitions", "timeoutS", "port", "agreeTokens", "args", "methods", "slotRestore"]);
  const model = s.model === undefined ? models[0].id : c.str(s.model, "server.model");
  if (!models.some((m) => m.id === model)) c.fail("server.model", `no model with id '${model}' (known: ${models.map((m) => m.id).join(", ")})`);
  const methods = c.arr(s.methods, "server.methods").map((m, i) => parseServerMethod(c, m, `server.methods[${i}]`));
  if (methods.length === 0) c.fail("server.methods", "needs at least one method");
  c.unique(methods.map((m) => m.id), "server.methods");
  const port = c.int(s.port ?? 18080, "server.port", 1024);
  if (port > 65535) c.fail("server.port", "must be at most 65535");
  const gen = c.int(s.gen ?? 256, "server.gen", 1);
  return {
    model,
    prompt: c.int(s.prompt ?? 4096, "server.prompt", 1),
    gen,
    repetitions: c.int(s.repetitions ?? 2, "server.repetitions", 1),
    timeoutS: c.num(s.timeoutS ?? 180, "server.timeoutS", 10),
    port,
    agreeTokens: Math.min(gen, c.int(s.agreeTokens ?? 16, "server.agreeTokens", 1)),
    args: s.args === undefined ? [] : c.strings(s.args, "server.args"),
    methods,
    slotRestore: s.slotRestore === undefined || s.slotRestore === null ? null : parseSlotRestore(c, s.slotRestore),
  };
}

/** Validates a parsed matrix object; `file` names the source in errors. */
export function validateMatrix(raw: unknown, file: string): Matrix {
  const c = new Checker(file);
  const o = c.obj(raw, "(root)");
  c.keys(o, "", ["name", "models", "freeVramGiB", "workloads", "methods", "torch", "server", "repetitions", "threads", "stepTimeoutS", "checkContext", "checkChunks"]);
  const models = c.arr(o.models, "models").map((m, i) => {
    const p = `models[${i}]`;
    const mo = c.obj(m, p);
    c.keys(mo, p, ["id", "shape", "quant"]);
    const id = c.id(mo.id, `${p}.id`);
    return { id, shape: c.str(mo.shape, `${p}.shape`), quant: c.oneOf(mo.quant, `${p}.quant`, ["Q8_0", "Q4_0", "F16"] as const) };
  });
  if (models.length === 0) c.fail("models", "needs at least one model");
  c.unique(models.map((m) => m.id), "models");
  const freeVramGiB = c.arr(o.freeVramGiB, "freeVramGiB").map((v, i) => c.num(v, `freeVramGiB[${i}]`, 0.5));
  const workloads = (o.workloads === undefined ? [] : c.arr(o.workloads, "workloads")).map((w, i) => {
    const p = `workloads[${i}]`;
    const wo = c.obj(w, p);
    c.keys(wo, p, ["id", "prompt", "gen", "endToEnd", "depth"]);
    return {
      id: c.str(wo.id, `${p}.id`),
      prompt: c.int(wo.prompt, `${p}.prompt`, 1),
      gen: c.int(wo.gen, `${p}.gen`, 1),
      endToEnd: wo.endToEnd === undefined ? false : c.bool(wo.endToEnd, `${p}.endToEnd`),
      depth: wo.depth === undefined ? 0 : c.int(wo.depth, `${p}.depth`, 0),
    };
  });
  c.unique(workloads.map((w) => w.id), "workloads");
  const methods = (o.methods === undefined ? [] : c.arr(o.methods, "methods")).map((m, i) => parseMethod(c, m, `methods[${i}]`));
  c.unique(methods.map((m) => m.id), "methods");
  if (methods.some((m) => m.ballast) && freeVramGiB.length === 0) c.fail("freeVramGiB", "methods with a ballast need at least one level");
  let torch: TorchSection | null = null;
  if (o.torch !== undefined && o.torch !== null) {
    const t = c.obj(o.torch, "torch");
    c.keys(t, "torch", ["shape", "dtype", "prompt", "gen", "methods", "timeoutS"]);
    torch = {
      shape: c.str(t.shape, "torch.shape"),
      dtype: t.dtype === undefined ? "bf16" : c.oneOf(t.dtype, "torch.dtype", ["bf16", "fp16"] as const),
      prompt: c.int(t.prompt ?? 512, "torch.prompt", 1),
      gen: c.int(t.gen ?? 16, "torch.gen", 1),
      methods: (t.methods === undefined ? ["all-vram", "accelerate", "shim"] : c.arr(t.methods, "torch.methods"))
        .map((m, i) => c.oneOf(m, `torch.methods[${i}]`, ["all-vram", "accelerate", "shim"] as const)),
      timeoutS: c.num(t.timeoutS ?? 240, "torch.timeoutS", 1),
    };
  }
  const server = o.server === undefined || o.server === null ? null : parseServer(c, o.server, models);
  if (server) {
    // Results and SPILLWAY_BENCH_ONLY name methods by id: one id space for both lists.
    for (const [i, m] of server.methods.entries()) {
      if (methods.some((x) => x.id === m.id)) c.fail(`server.methods[${i}].id`, `duplicate id '${m.id}' (also in methods)`);
    }
    if (server.methods.some((m) => m.ballast) && freeVramGiB.length === 0) c.fail("freeVramGiB", "server methods with a ballast need at least one level");
  }
  // The llama-bench methods (and the PyTorch reference, run with the first workload) need a workload;
  // a matrix of only the server section needs none.
  if (workloads.length === 0 && (methods.length > 0 || torch !== null)) c.fail("workloads", "needs at least one workload");
  if (methods.length === 0 && torch === null && server === null) c.fail("methods", "nothing to run: give methods, a torch section or a server section");
  return {
    file,
    name: o.name === undefined ? file.replace(/^.*\//, "").replace(/\.json5?$/, "") : c.str(o.name, "name"),
    models,
    freeVramGiB,
    workloads,
    methods,
    torch,
    server,
    repetitions: c.int(o.repetitions ?? 2, "repetitions", 1),
    threads: c.int(o.threads ?? 16, "threads", 1),
    stepTimeoutS: c.num(o.stepTimeoutS ?? 180, "stepTimeoutS", 1),
    checkContext: c.int(o.checkContext ?? 128, "checkContext", 16),
    checkChunks: c.int(o.checkChunks ?? 2, "checkChunks", 1),
  };
}

/** Parses JSON5 text; syntax errors carry line and column. */
export function parseMatrix(text: string, file: string): Matrix {
  let raw: unknown;
  try {
    raw = JSON5.parse(text);
  } catch (e) {
    const err = e as { lineNumber?: number; columnNumber?: number; message: string };
    throw new RecipeSyntaxError(file, err.lineNumber ?? 0, err.columnNumber ?? 0, err.message, { cause: e });
  }
  return validateMatrix(raw, file);
}

/** Reads and validates a matrix file. */
export function loadMatrix(file: string): Matrix {
  return parseMatrix(readFileSync(file, "utf8"), file);
}

/**
 * The matrix restricted to the models named in `ids` (comma-separated model ids, as
 * SPILLWAY_BENCH_ONLY_MODELS gives them), so one matrix can run in several device calls on one
 * machine. Empty or undefined keeps every model; an unknown id is an error naming `source`.
 *
 * @example
 * const glm = onlyModels(loadMatrix("bench/matrices/hybrid-both-12g.json5"), "glm47flash", "SPILLWAY_BENCH_ONLY_MODELS");
 */
export function onlyModels(matrix: Matrix, ids: string | undefined, source: string): Matrix {
  const want = (ids ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (want.length === 0) return matrix;
  const known = matrix.models.map((m) => m.id);
  const unknown = want.filter((id) => !known.includes(id));
  if (unknown.length > 0) {
    throw new RecipeSchemaError(matrix.file, source, `no model '${unknown.join("', '")}' here (its models: ${known.join(", ")})`);
  }
  return { ...matrix, models: matrix.models.filter((m) => want.includes(m.id)) };
}

/**
 * A matrix file as the GPU bench runs it: restricted to `SPILLWAY_BENCH_ONLY_MODELS` when set
 * ({@link onlyModels}).
 */
export function loadBenchMatrix(file: string, env: Readonly<Record<string, string | undefined>> = process.env): Matrix {
  return onlyModels(loadMatrix(file), env.SPILLWAY_BENCH_ONLY_MODELS, "SPILLWAY_BENCH_ONLY_MODELS");
}
