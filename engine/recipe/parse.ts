/**
 * Read a recipe: strip an optional shebang line, parse JSON5 (syntax errors located by
 * file:line:column), validate against the schema, apply defaults and resolve the model path.
 *
 * @module
 */
import JSON5 from "json5";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { ModelFileError, RecipeSchemaError, RecipeSyntaxError } from "../../core/errors.ts";
import type { Workload } from "../../core/types.ts";
import { isProfileName, profileNames } from "../hardware/profiles.ts";
import { parseEndpoint } from "../hardware/rpc_client.ts";
import { defaultModelPath, KNOWN_MODELS } from "./models.ts";
import { RECIPE_SPEC } from "./schema.ts";
import { suggest } from "./suggest.ts";
import type {
  HardwareOverrides,
  HardwareSpec,
  PlacementPolicy,
  Recipe,
  RecipeModel,
  RecipeRuntime,
  RecipeRuntimeName,
} from "./types.ts";
import { RecipeErrors } from "./locate.ts";
import { validate } from "./validate.ts";

/** Token counts of the named workloads. */
export const WORKLOADS: Readonly<Record<"chat" | "rag", Workload>> = {
  chat: { objective: "chat", promptTokens: 512, generatedTokens: 512 },
  rag: { objective: "rag", promptTokens: 4096, generatedTokens: 128 },
};

/** Defaults of the optional recipe fields. */
export const RECIPE_DEFAULTS = { context: 4096, batch: 2048 } as const;

/** Blank out a leading `#!` line (keeping the newline, so line numbers stay right). */
function stripShebang(text: string): string {
  if (!text.startsWith("#!")) return text;
  const nl = text.indexOf("\n");
  return nl < 0 ? "" : text.slice(nl);
}

function expandHome(p: string): string {
  return p === "~" ? homedir() : p.startsWith("~/") ? join(homedir(), p.slice(2)) : p;
}

/**
 * Parse and validate recipe text. Pure: does not check that the model file exists
 * ({@link loadRecipe} does).
 * @param text JSON5 source, optionally starting with a `#!` line.
 * @param file Name used in messages and to resolve a relative model path.
 * @throws RecipeSyntaxError (file:line:column) or RecipeSchemaError (field path).
 */
export function parseRecipe(text: string, file = "<inline>"): Recipe {
  let raw: unknown;
  try {
    raw = JSON5.parse(stripShebang(text.replace(/^\uFEFF/, "")));
  } catch (e) {
    const err = e as { lineNumber?: number; columnNumber?: number; message?: string };
    const detail = String(err.message ?? e).replace(/^JSON5: /, "").replace(/ at \d+:\d+$/, "");
    throw new RecipeSyntaxError(file, err.lineNumber ?? 1, err.columnNumber ?? 1, detail, { cause: e });
  }
  // Every error is reported (as compilers do), each at its file:line:column and field path.
  const errors: RecipeSchemaError[] = [];
  const r = validate(raw, RECIPE_SPEC, file, "", errors) as Record<string, any>;
  if (errors.length > 0) throw new RecipeErrors(file, text, errors);
  const schemaError = (path: string, detail: string): never => {
    throw new RecipeSchemaError(file, path, detail);
  };
  const collect = <T>(f: () => T, fallback: T): T => {
    try {
      return f();
    } catch (e) {
      if (!(e instanceof RecipeSchemaError)) throw e;
      errors.push(e);
      return fallback;
    }
  };

  const runtime = collect(() => normalizeRuntime(r.runtime, schemaError), { name: "command" } as RecipeRuntime);
  const model = collect(() => normalizeModel(r.model ?? {}, file, schemaError), null);

  const batch: number = r.batch ?? RECIPE_DEFAULTS.batch;
  if (r.ubatch !== undefined && r.ubatch > batch) collect(() => schemaError("ubatch", `must not exceed batch (${batch}), got ${r.ubatch}`), null);

  const workload: Workload = r.workload === undefined
    ? { ...WORKLOADS.chat }
    : typeof r.workload === "string"
    ? { ...WORKLOADS[r.workload as "chat" | "rag"] }
    : { objective: "custom", promptTokens: r.workload.promptTokens, generatedTokens: r.workload.generatedTokens };
  const context: number = r.context ?? RECIPE_DEFAULTS.context;
  if (workload.promptTokens + workload.generatedTokens > context) {
    collect(() => schemaError("workload", `prompt + generated tokens (${workload.promptTokens + workload.generatedTokens}) exceed context (${context})`), null);
  }
  const hardware = collect(() => normalizeHardware(r.hardware, schemaError), { kind: "probe" } as HardwareSpec);
  const promptCache = r.promptCache === undefined ? undefined : collect(() => normalizePromptCache(r.promptCache, runtime, file, schemaError), undefined);
  if (errors.length > 0 || model === null) throw new RecipeErrors(file, text, errors);

  const recipe: Recipe = {
    file,
    model,
    runtime,
    context,
    batch,
    workload,
    placement: normalizePlacement(r.placement),
    hardware,
  };
  if (r.name !== undefined) recipe.name = r.name;
  if (r.description !== undefined) recipe.description = r.description;
  if (r.ubatch !== undefined) recipe.ubatch = r.ubatch;
  if (r.threads !== undefined) recipe.threads = r.threads;
  if (r.kvCache !== undefined) recipe.kvCache = { types: [...new Set<"f16" | "q8_0" | "q4_0">(r.kvCache.types)] };
  if (promptCache !== undefined) recipe.promptCache = promptCache;
  return recipe;
}

/** `promptCache` (issue 21): llama-server only; the directory resolved like the model path. */
function normalizePromptCache(p: any, rt: RecipeRuntime, file: string, fail: (path: string, detail: string) => never): { dir: string; reuse: number } {
  if (rt.name !== "llama.cpp") fail("promptCache", `only runtime "llama.cpp" (llama-server) has a prompt cache (runtime is ${JSON.stringify(rt.name)})`);
  if (rt.program !== undefined && rt.program !== "server") {
    fail("promptCache", `the prompt cache is llama-server's (runtime.program "server"), not llama-${rt.program}'s`);
  }
  if (typeof p.dir !== "string" || p.dir.trim() === "") fail("promptCache.dir", "must name a directory, e.g. \"~/.cache/spillway/slots\"");
  const base = file === "<inline>" ? process.cwd() : dirname(resolve(file));
  return { dir: resolve(base, expandHome(p.dir)), reuse: p.reuse ?? 256 };
}

function normalizeRuntime(v: any, fail: (path: string, detail: string) => never): RecipeRuntime {
  const rt: RecipeRuntime = typeof v === "string" ? { name: v as RecipeRuntimeName } : { ...v };
  if (rt.name === "command" && rt.command === undefined) {
    fail("runtime.command", 'runtime "command" needs the argv to run, e.g. runtime: { name: "command", command: ["python", "serve.py"] }');
  }
  if (rt.name !== "command" && rt.command !== undefined) {
    fail("runtime.command", `only runtime "command" takes a command (runtime is ${JSON.stringify(rt.name)}); use args for extra flags`);
  }
  if (rt.program !== undefined && rt.name !== "llama.cpp") {
    fail("runtime.program", `only runtime "llama.cpp" has programs (runtime is ${JSON.stringify(rt.name)})`);
  }
  return rt;
}

function normalizeModel(m: any, file: string, fail: (path: string, detail: string) => never): RecipeModel {
  const synth = m.synth === true;
  let known: { shape: string } | undefined;
  if (m.id !== undefined) {
    known = KNOWN_MODELS[m.id];
    if (m.quant === undefined) fail("model.quant", `model id ${JSON.stringify(m.id)} needs a quant; allowed values: "q8_0", "q4_0", "f16"`);
  } else if (m.quant !== undefined && m.path === undefined) {
    fail("model.id", "quant is given but no id; name a known id or a path");
  }
  if (m.path === undefined && m.id === undefined) {
    fail("model", 'needs `path` (a model file) or `id` + `quant` (a known model), e.g. model: { id: "qwen3-30b-a3b", quant: "q8_0" }');
  }
  if (synth && known === undefined) fail("model.synth", "synth needs a known `id` (its shape is what gets synthesized)");
  const base = file === "<inline>" ? process.cwd() : dirname(resolve(file));
  const out: RecipeModel = m.path !== undefined
    ? { path: resolve(base, expandHome(m.path)), source: "path", synth }
    : { path: defaultModelPath(m.id, m.quant), source: "id", synth };
  if (m.id !== undefined) {
    out.id = m.id;
    out.quant = String(m.quant).toLowerCase();
    out.shape = known!.shape;
  }
  return out;
}

function normalizePlacement(p: any): PlacementPolicy {
  if (p === undefined || p === "auto") return { auto: true, kv: "auto", experts: "auto", cpuLayers: [] };
  const out: PlacementPolicy = {
    auto: false,
    kv: p.kv ?? "auto",
    experts: p.experts ?? "auto",
    cpuLayers: [...new Set<number>(p.cpuLayers ?? [])].sort((a, b) => a - b),
  };
  if (p.vramCap !== undefined) out.vramCap = p.vramCap;
  if (p.ramCap !== undefined) out.ramCap = p.ramCap;
  if (p.reserve !== undefined) out.reserve = p.reserve;
  return out;
}

function checkProfile(name: string, path: string, fail: (path: string, detail: string) => never): void {
  if (name === "probe" || isProfileName(name)) return;
  const names = ["probe", ...profileNames()];
  const near = suggest(name, names);
  fail(path, `unknown hardware profile ${JSON.stringify(name)}${near ? ` (did you mean ${JSON.stringify(near)}?)` : ""}; allowed values: ${names.map((n) => JSON.stringify(n)).join(", ")}`);
}

/** `hardware.nodes` (issue 19): each endpoint host:port, none twice. */
function checkNodes(nodes: HardwareOverrides["nodes"], fail: (path: string, detail: string) => never): void {
  const seen = new Map<string, number>();
  for (const [i, n] of (nodes ?? []).entries()) {
    try {
      parseEndpoint(n.rpc);
    } catch (e) {
      fail(`hardware.nodes[${i}].rpc`, (e as Error).message);
    }
    const j = seen.get(n.rpc);
    if (j !== undefined) fail(`hardware.nodes[${i}].rpc`, `${JSON.stringify(n.rpc)} is also hardware.nodes[${j}]: each rpc-server serves one client`);
    seen.set(n.rpc, i);
  }
}

function normalizeHardware(h: any, fail: (path: string, detail: string) => never): HardwareSpec {
  if (h === undefined || h === "probe") return { kind: "probe" };
  if (typeof h === "string") {
    checkProfile(h, "hardware", fail);
    return { kind: "profile", name: h };
  }
  const { profile, fallback, ...rest } = h as { profile?: string; fallback?: string } & HardwareOverrides;
  if (profile !== undefined) checkProfile(profile, "hardware.profile", fail);
  if (fallback !== undefined) checkProfile(fallback, "hardware.fallback", fail);
  if (Object.keys(rest).length === 0) {
    if (profile === undefined || profile === "probe") return fallback === undefined ? { kind: "probe" } : { kind: "probe", fallback };
    return { kind: "profile", name: profile };
  }
  checkNodes(rest.nodes, fail);
  const spec: HardwareSpec = { kind: "explicit", overrides: rest };
  if (profile !== undefined && profile !== "probe") spec.profile = profile;
  return spec;
}

/**
 * Read, parse and validate a recipe file, and check that a model named by `path` exists (unless
 * `synth` is set). A model named by `id` may be absent: the planner then plans from its known shape.
 * @throws RecipeSyntaxError, RecipeSchemaError, or ModelFileError naming the path and the field.
 */
export async function loadRecipe(path: string): Promise<Recipe> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new RecipeSchemaError(path, "(file)", `cannot read the recipe: ${(e as Error).message}`, { cause: e });
  }
  const recipe = parseRecipe(text, path);
  const m = recipe.model;
  if (m.source === "path" && !m.synth && !existsSync(m.path)) {
    throw new ModelFileError(
      m.path,
      `model file not found (model.path in ${path}); fix the path, or name a known model by id + quant`,
    );
  }
  return recipe;
}
