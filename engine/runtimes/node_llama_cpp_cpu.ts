/**
 * Which of node-llama-cpp's prebuilt CPU backends runs a model. The linux-x64 prebuilt ships one
 * `libggml-cpu-<variant>.so` per CPU generation and ggml loads the best-scoring one; on a CPU with
 * AMX that is `sapphirerapids`, the only variant built with AMX. Its AMX "extra buffer type" takes a
 * weight when a contiguous probe multiplication passes (llama-model-loader.cpp weight_buft_supported),
 * but the MLA graph of deepseek2-family models (DeepSeek V2/V3, GLM-4.7-Flash) multiplies the 3-D
 * `attn_k_b` / `attn_v_b` weights by permuted, non-contiguous views; the AMX buffer's supports_op
 * then refuses, no backend is left for the node and ggml aborts the process
 * (`ggml-backend.cpp: GGML_ASSERT(*cur_backend_id != -1)`). llama.cpp's knob against it
 * (`llama_model_params.use_extra_bufts`, `--no-repack`) is not exposed by node-llama-cpp, so for
 * such a model the CPU backend is loaded from a directory without the AMX variant, before
 * node-llama-cpp loads its own: ggml then picks the next best variant (AVX-512, no extra buffer
 * that mishandles these tensors). Details and the upstream bug: docs/run.md, "node-llama-cpp on AMX CPUs".
 *
 * @example
 * ```ts
 * if (needsNoAmxBackend(readGgufHeader(path).tensors.map((t) => t.name))) await loadCpuBackendWithout(AMX_CPU_VARIANTS);
 * ```
 *
 * @module
 */
import { createRequire } from "node:module";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/**
 * CPU variants of the prebuilt binaries built with AMX (ggml/src/CMakeLists.txt: only
 * `sapphirerapids` lists AMX_TILE/AMX_INT8). test/node_llama_cpp_cpu.test.ts checks this list
 * against the installed binaries.
 */
export const AMX_CPU_VARIANTS: readonly string[] = ["sapphirerapids"];

/** The absorbed-MLA weights the AMX extra buffer accepts but cannot run in the MLA graph. */
const MLA_ABSORBED = /(^|\.)attn_[kv]_b\.weight$/;

/** True when a model with these tensor names must not run on the AMX CPU variant. */
export function needsNoAmxBackend(tensorNames: Iterable<string>): boolean {
  for (const n of tensorNames) if (MLA_ABSORBED.test(n)) return true;
  return false;
}

/**
 * The directory holding the prebuilt linux-x64 CPU binaries, or null when not installed. Resolved
 * from node-llama-cpp's own location, as it does (not imported: a bundler would inline the package
 * and move its `bins` path).
 */
export async function prebuiltCpuBinsDir(): Promise<string | null> {
  try {
    const fromNlc = createRequire(import.meta.resolve("node-llama-cpp"));
    const entry = fromNlc.resolve("@node-llama-cpp/linux-x64"); // <pkg>/dist/index.js
    const bins = join(dirname(dirname(entry)), "bins", "linux-x64");
    return existsSync(bins) ? bins : null;
  } catch {
    return null;
  }
}

/** What {@link loadCpuBackendWithout} did. */
export interface CpuBackendChoice {
  /** Variants left out (those present in the prebuilt directory). */
  excluded: string[];
  /** Directory the backend was loaded from (removed again once loaded). */
  from: string;
}

/**
 * Registers ggml's CPU backend from the prebuilt variants minus `exclude`, through the prebuilt
 * addon's own `loadBackends(dir)`. node-llama-cpp, loading afterwards, finds a CPU backend
 * registered and does not load its own choice (Llama.js: it loads from its directory only when no
 * device is registered). Returns null (and changes nothing) when the prebuilt is not installed or
 * not on linux-x64. Call once per process, before `getLlama({ gpu: false })`.
 */
export async function loadCpuBackendWithout(exclude: readonly string[]): Promise<CpuBackendChoice | null> {
  if (process.platform !== "linux" || process.arch !== "x64") return null;
  const bins = await prebuiltCpuBinsDir();
  if (bins === null) return null;
  const names = readdirSync(bins);
  const variant = (f: string): string | null => /^libggml-cpu-(.+)\.so$/.exec(f)?.[1] ?? null;
  const dir = mkdtempSync(join(tmpdir(), "spillway-ggml-cpu-"));
  const excluded: string[] = [];
  try {
    for (const f of names) {
      const v = variant(f);
      if (v === null) continue;
      if (exclude.includes(v)) excluded.push(v);
      else symlinkSync(join(bins, f), join(dir, f));
    }
    const addon = createRequire(import.meta.url)(join(bins, "llama-addon.node")) as { loadBackends(dir?: string): void };
    addon.loadBackends(dir);
  } finally {
    // dlopen keeps the chosen library mapped; the links are not needed after loading.
    rmSync(dir, { recursive: true, force: true });
  }
  return { excluded, from: dir };
}

/** The ggml CPU variant mapped into this process (`icelake`, `sapphirerapids`, ...), or null. */
export function loadedCpuVariant(): string | null {
  try {
    const maps = readFileSync("/proc/self/maps", "utf8");
    return /libggml-cpu-([A-Za-z0-9_]+)\.so/.exec(maps)?.[1] ?? null;
  } catch {
    return null;
  }
}

/** Variants in the prebuilt directory whose library contains ggml's AMX initialisation (for the test). */
export function variantsBuiltWithAmx(bins: string): string[] {
  const marker = Buffer.from("AMX is not ready to be used");
  const out: string[] = [];
  for (const f of readdirSync(bins).sort()) {
    const v = /^libggml-cpu-(.+)\.so$/.exec(f)?.[1];
    if (v && readFileSync(join(bins, f)).includes(marker)) out.push(v);
  }
  return out;
}
