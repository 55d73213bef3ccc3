/**
 * The patched llama.cpp that runs hybrid MoE experts (runtimes/llama.cpp/patches/): where
 * runtimes/llama.cpp/build.sh puts its binaries (a cache folder keyed by the source commit and the
 * patches, computed the same way as the script), and how to tell a user to build it.
 *
 * @example
 * const b = hybridBuild();
 * if (!b.built("llama-server")) console.error(hybridBuildHint());
 * @module
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheDir } from "../../core/paths.ts";

/** Environment variable of the patched llama.cpp: the GPU's share of each token's selected experts (the first f*k of its k; a boundary expert's rows divided, patch 0008). */
export const HYBRID_FRACTION_ENV = "LLAMA_MOE_HYBRID_GPU_FRACTION";

/** Environment variable of the patched llama.cpp: `copy` has the GPU part's experts copied into VRAM first (default: read in place). */
export const HYBRID_READ_ENV = "LLAMA_MOE_HYBRID_GPU_READ";

/**
 * Environment variable of the patched llama.cpp (patch 0006): `4` computes one-token Q8_0 expert
 * products on the CPU as four row streams per thread. It changes the CPU kernel's speed, not its
 * results (the same arithmetic), and is not set by plans until measured on a GPU machine.
 */
export const MATVEC_STREAMS_ENV = "GGML_CPU_MATVEC_STREAMS";

/** The settings that decide whether a plan runs hybrid experts, and how. */
export interface HybridSettings {
  hybridGpuFraction?: number;
  hybridGpuRead?: "inplace" | "copy";
}

/** True when the settings run hybrid experts (a GPU share above 0): they need the patched build. */
export function isHybrid(s: HybridSettings): boolean {
  return s.hybridGpuFraction !== undefined && s.hybridGpuFraction > 0;
}

/**
 * The patched build's environment for the settings: the GPU share and, in the copy mode, the read
 * mode; empty for a stock plan. Launches and autotune's trials both take it from here, so a trial
 * measures what a launch runs.
 *
 * @example
 * hybridEnvironment({ hybridGpuFraction: 0.375, hybridGpuRead: "copy" });
 * // { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.375", LLAMA_MOE_HYBRID_GPU_READ: "copy" }
 */
export function hybridEnvironment(s: HybridSettings): Record<string, string> {
  if (!isHybrid(s)) return {};
  return { [HYBRID_FRACTION_ENV]: String(s.hybridGpuFraction), ...(s.hybridGpuRead === "copy" ? { [HYBRID_READ_ENV]: "copy" } : {}) };
}

/** The folder holding runtimes/llama.cpp (the package root), searched upwards from this module. */
export function runtimesDir(start: string = dirname(fileURLToPath(import.meta.url))): string | null {
  let dir = start;
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, "runtimes", "llama.cpp", "build.sh"))) return join(dir, "runtimes", "llama.cpp");
    dir = resolve(dir, "..");
  }
  return null;
}

/**
 * The cache key of a build: sha256 over "commit <sha>" and "patch <name> <sha256>" lines (one per
 * patch, sorted by name), first 16 hex digits; runtimes/llama.cpp/build.sh computes the same.
 */
export function hybridKey(commit: string, patches: { name: string; content: Uint8Array | string }[]): string {
  const lines = [`commit ${commit}`];
  for (const p of [...patches].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    lines.push(`patch ${p.name} ${createHash("sha256").update(p.content).digest("hex")}`);
  }
  return createHash("sha256").update(lines.join("\n") + "\n").digest("hex").slice(0, 16);
}

/** Where the patched build of this checkout goes and whether a program is there. */
export interface HybridBuild {
  /** Folder of the binaries (`<cache>/llama.cpp-hybrid/<key>/build/bin`), or null when the inputs are missing. */
  binDir: string | null;
  /** Why binDir is null. */
  missing?: string;
  /** The program's path when built, else null. */
  built(program: string): string | null;
}

/**
 * The patched build for the bundled llama.cpp source (node_modules/node-llama-cpp's gitRelease.bundle)
 * and the checked-in patches.
 */
export function hybridBuild(opts: { root?: string; bundle?: string; cache?: string } = {}): HybridBuild {
  const dir = opts.root ?? runtimesDir();
  const none = (missing: string): HybridBuild => ({ binDir: null, missing, built: () => null });
  if (!dir) return none("runtimes/llama.cpp not found beside spillway");
  const bundle = opts.bundle ?? join(dir, "..", "..", "node_modules", "node-llama-cpp", "llama", "gitRelease.bundle");
  if (!existsSync(bundle)) return none(`llama.cpp source bundle ${bundle} not found (npm install node-llama-cpp)`);
  let commit: string;
  try {
    commit = execFileSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split(" ")[0]!.trim();
  } catch (e) {
    return none(`cannot read the source commit of ${bundle}: ${(e as Error).message}`);
  }
  const patchDir = join(dir, "patches");
  const names = existsSync(patchDir) ? readdirSync(patchDir).filter((n) => n.endsWith(".patch")) : [];
  if (names.length === 0) return none(`no patches in ${patchDir}`);
  const key = hybridKey(commit, names.map((name) => ({ name, content: readFileSync(join(patchDir, name)) })));
  const binDir = join(opts.cache ?? cacheDir(), "llama.cpp-hybrid", key, "build", "bin");
  return {
    binDir,
    built: (program) => (existsSync(join(binDir, program)) ? join(binDir, program) : null),
  };
}

/** What to tell a user whose plan needs the patched llama.cpp when it is not built. */
export function hybridBuildHint(root: string | null = runtimesDir()): string {
  const script = root ? join(root, "build.sh") : "runtimes/llama.cpp/build.sh";
  return `The plan runs hybrid MoE experts, which need llama.cpp with spillway's patches (runtimes/llama.cpp/patches/). ` +
    `Build it once with \`bash ${script}\` (CUDA toolkit, cmake and git needed; several minutes), ` +
    `or set \`binary\` in the recipe to a llama.cpp built with them.`;
}
