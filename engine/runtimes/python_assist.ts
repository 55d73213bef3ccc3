/**
 * What spillway can do from outside for `spillway run -- python3 script.py`: it cannot edit the
 * script, but it can (1) set environment PyTorch honours, (2) write the access-aware placement map
 * for the model the script loads, when it can find that model in the command line or the Hugging
 * Face cache, and (3) say in one line what it could not do.
 *
 * - `TORCH_CUDNN_SDPA_DEPRIORITIZED=1`: PyTorch (>= 2.9 builds with cuDNN > 9.15 on sm90/sm100) puts
 *   cuDNN first among the SDPA backends; its graph build for each new KV-cache length cost ~1.2 ms of
 *   host time per attention call per decoded token (bench/gpu/torch_decode_probe.py). The variable
 *   (read once in aten/src/ATen/native/transformers/cuda/sdp_utils.cpp, check_prefer_cudnn_attention)
 *   keeps PyTorch's older order, flash / memory-efficient first. A user's own setting wins.
 * - `XLA_PYTHON_CLIENT_PREALLOCATE=false`: JAX/XLA by default takes 75% of the memory the driver
 *   reports, at start, as one allocation. Under the shim the report is VRAM plus the host limit, so a
 *   12 GiB card with 64 GiB of host limit would pin ~45 GiB of host memory before the first array,
 *   whatever the program needs. Growing on demand (the variable) puts XLA's allocations in VRAM first
 *   and in host memory only past it. Not set when the user chose any XLA_PYTHON_CLIENT_* setting.
 * - The map: `placementForTensors` over the model's tensors in `model.to("cuda")` order.
 *
 * @example
 * ```ts
 * import { pythonAssist } from "./python_assist.ts";
 * const a = pythonAssist(["python3", "gen.py", "--model", "/models/llama"], process.env, { vramForWeights: 10 * 2 ** 30, minSpill: 32 * 2 ** 20, mapDir: "/tmp" });
 * // a.env: { TORCH_CUDNN_SDPA_DEPRIORITIZED: "1", XLA_PYTHON_CLIENT_PREALLOCATE: "false", SPILLWAY_PLACEMENT: "/tmp/spillway-map-….map" }
 * // a.hints: the one line saying why XLA_PYTHON_CLIENT_PREALLOCATE was set
 * ```
 *
 * @module
 */
import { closeSync, constants, existsSync, openSync, readdirSync, readFileSync, statSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { basename, join } from "node:path";
import { randomBytes } from "node:crypto";
import { readSafetensorsHeader, readSafetensorsIndex } from "../model/safetensors.ts";
import { type PlacementPlan, placementForTensors, tensorsFromConfig, tensorsFromHeader, type WeightTensor } from "../placement_map.ts";
import { formatPlacementMap } from "../../shim/placement.ts";

/** Options of {@linkcode pythonAssist}. */
export interface AssistOptions {
  /** VRAM the shim lets weights use (the plan's budget); no map without it. */
  vramForWeights?: number;
  /** The shim's SPILLWAY_MIN_SPILL. */
  minSpill: number;
  /** Where to write the map (a private file is created there); null: plan it, write nothing (dry run). */
  mapDir: string | null;
}

/** What to add to the command's environment, the map written, and one-line hints. */
export interface Assist {
  env: Record<string, string>;
  model: string | null;
  map: { path: string; plan: PlacementPlan } | null;
  hints: string[];
}

/**
 * VRAM a program's weights may use under the shim's default budget (free VRAM at its first
 * allocation minus the reserve): free VRAM minus 0.4 GiB for the CUDA context and a margin (the
 * H200 run of 2026-11-22 saw a 10.85 GiB budget at 12 GiB free) minus the reserve. The map leaves
 * what it does not name to the shim, so an overestimate only spills the last allocations too.
 */
export function weightsBudgetFor(freeVramBytes: number, reserveBytes: number): number {
  return Math.max(0, freeVramBytes - 0.4 * 2 ** 30 - reserveBytes);
}

/** True when `path` is a map {@linkcode pythonAssist} wrote (the launcher removes it after the run). */
export function isAssistMap(path: string | undefined): boolean {
  return path !== undefined && /^spillway-map-\d+-[0-9a-f]{8}\.map$/.test(basename(path));
}

/** True for a Python interpreter or a launcher that runs Python scripts. */
export function isPythonCommand(argv: readonly string[]): boolean {
  const b = basename(argv[0] ?? "");
  return /^python(\d+(\.\d+)?)?$/.test(b) || b === "torchrun" || b === "accelerate" || (argv[0] ?? "").endsWith(".py");
}

function hubDir(env: Record<string, string | undefined>): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, "hub");
  return join(env.XDG_CACHE_HOME ?? join(env.HOME ?? homedir(), ".cache"), "huggingface", "hub");
}

/** A snapshot directory of `org/name` in the Hugging Face cache (the newest), or null. */
function fromHubCache(id: string, env: Record<string, string | undefined>): string | null {
  const snaps = join(hubDir(env), `models--${id.replace("/", "--")}`, "snapshots");
  let best: { dir: string; t: number } | null = null;
  try {
    for (const s of readdirSync(snaps)) {
      const dir = join(snaps, s);
      const t = statSync(dir).mtimeMs;
      if (existsSync(join(dir, "config.json")) && (!best || t > best.t)) best = { dir, t };
    }
  } catch {
    return null;
  }
  return best?.dir ?? null;
}

/**
 * The model directory a command names: an argument (or `--opt=value`) that is a directory holding
 * config.json, a .safetensors file or index inside one, or an `org/name` found in the Hugging Face
 * cache. The first one wins.
 */
export function findModel(argv: readonly string[], env: Record<string, string | undefined>): string | null {
  for (const raw of argv.slice(1)) {
    const arg = raw.includes("=") && raw.startsWith("-") ? raw.slice(raw.indexOf("=") + 1) : raw;
    if (!arg || arg.startsWith("-")) continue;
    try {
      const st = statSync(arg);
      if (st.isDirectory() && existsSync(join(arg, "config.json"))) return arg;
      if (st.isFile() && /\.safetensors(\.index\.json)?$/.test(arg)) {
        const dir = arg.slice(0, Math.max(0, arg.lastIndexOf("/"))) || ".";
        if (existsSync(join(dir, "config.json"))) return dir;
      }
      continue;
    } catch {
      // not a path: maybe a hub id
    }
    if (/^[\w.-]+\/[\w.-]+$/.test(arg)) {
      const hit = fromHubCache(arg, env);
      if (hit) return hit;
    }
  }
  return null;
}

/** The model's weight tensors in `model.to("cuda")` order: safetensors headers, else config.json. */
export function modelTensors(dir: string): WeightTensor[] {
  const index = join(dir, "model.safetensors.index.json");
  if (existsSync(index)) return tensorsFromHeader(readSafetensorsIndex(index).headers.flatMap((h) => h.tensors));
  const files = readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort();
  if (files.length > 0) return tensorsFromHeader(files.flatMap((f) => readSafetensorsHeader(join(dir, f)).tensors));
  const cfgPath = join(dir, "config.json");
  const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
  const dt = String(cfg.torch_dtype ?? cfg.dtype ?? "bfloat16");
  return tensorsFromConfig(cfg, /32/.test(dt) ? 4 : 2);
}

/** Write `text` to a new private file in `dir` (O_EXCL, O_NOFOLLOW, mode 0600). */
function writePrivate(dir: string, text: string): string {
  const path = join(dir, `spillway-map-${process.pid}-${randomBytes(4).toString("hex")}.map`);
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  return path;
}

/**
 * Environment, placement map and hints for a Python command run under the shim. Variables the
 * user already set are left alone (and no map replaces their SPILLWAY_PLACEMENT).
 */
export function pythonAssist(argv: readonly string[], env: Record<string, string | undefined>, opts: AssistOptions): Assist {
  const out: Assist = { env: {}, model: null, map: null, hints: [] };
  if (!isPythonCommand(argv)) return out;
  if (env.TORCH_CUDNN_SDPA_DEPRIORITIZED === undefined) out.env.TORCH_CUDNN_SDPA_DEPRIORITIZED = "1";
  if (!Object.keys(env).some((k) => k.startsWith("XLA_PYTHON_CLIENT_") && env[k] !== undefined)) {
    out.env.XLA_PYTHON_CLIENT_PREALLOCATE = "false";
    out.hints.push("spillway: set XLA_PYTHON_CLIENT_PREALLOCATE=false: JAX would otherwise take 75% of the VRAM + host memory the shim reports at start " +
      "(pinning host memory it may never use); on demand, its arrays go to VRAM first and to host memory past it");
  }
  if (env.SPILLWAY_PLACEMENT) return out;
  out.model = findModel(argv, env);
  if (!out.model) {
    out.hints.push("spillway: no model directory or Hugging Face id found in the command line, so the shim spills in allocation order " +
      "(the embedding stays in VRAM, the last layers and the head go to host memory); pass the model path as an argument for an access-aware map");
    return out;
  }
  if (opts.vramForWeights === undefined) {
    out.hints.push("spillway: no VRAM budget in the plan, so no placement map: the shim spills in allocation order");
    return out;
  }
  let tensors: WeightTensor[];
  try {
    tensors = modelTensors(out.model);
  } catch (e) {
    out.hints.push(`spillway: could not read the model in ${out.model} (${(e as Error).message}); the shim spills in allocation order`);
    return out;
  }
  const plan = placementForTensors(tensors, { vramForWeights: opts.vramForWeights, minSpill: opts.minSpill });
  if (plan.rules.length > 0) {
    const path = opts.mapDir === null ? "(not written: dry run)" : writePrivate(opts.mapDir, formatPlacementMap(plan.rules));
    out.map = { path, plan };
    if (opts.mapDir !== null) out.env.SPILLWAY_PLACEMENT = path;
  }
  out.hints.push("spillway: a stock script keeps PyTorch's per-token host overhead (dynamic KV cache, no CUDA graph); " +
    "runtime: transformers in a recipe runs the same model with a static cache and CUDA graphs");
  return out;
}

/**
 * The access-aware map of the model in `dir` as inline rules (SPILLWAY_PLACEMENT_RULES, `;`
 * between rules): what a launcher that owns the command (the transformers recipe) hands the shim
 * without writing a file. Null when the model cannot be read or nothing needs to spill.
 */
export function inlinePlacementRules(dir: string, vramForWeights: number, minSpill: number): { rules: string; plan: PlacementPlan } | null {
  let tensors: WeightTensor[];
  try {
    tensors = modelTensors(dir);
  } catch {
    return null;
  }
  const plan = placementForTensors(tensors, { vramForWeights, minSpill });
  if (plan.rules.length === 0) return null;
  const text = formatPlacementMap(plan.rules.map((r) => ({ ...r, comment: undefined })));
  return { rules: text.split("\n").filter((l) => l && !l.startsWith("#")).join(";"), plan };
}
