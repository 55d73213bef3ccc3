/**
 * llama.cpp's `rpc-server` and `llama-completion`, CPU backend with RPC on, built from the source
 * node-llama-cpp bundles (issue 19): for the RPC end-to-end test and for `spillway run` recipes
 * that start local rpc-servers (`hardware.nodes[].start`). Only the two targets are built, static,
 * portable (-DGGML_NATIVE=OFF: one build serves any x86-64 host), with ccache when installed;
 * cached in `<cache>/llama.cpp-rpc/<source commit, 12 hex>/`, so a second call returns at once.
 *
 * @example
 * ```ts
 * import { buildRpcPrograms, builtRpcPrograms } from "./llamacpp_rpc_build.ts";
 * const b = builtRpcPrograms() ?? await buildRpcPrograms({ log: (s) => process.stderr.write(s) });
 * console.log(b.rpcServer, b.completion);
 * ```
 *
 * @module
 */
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { LaunchError } from "../../core/errors.ts";
import { hasProgram } from "../../core/native_build.ts";
import { cacheDir } from "../../core/paths.ts";
import { runtimesDir } from "./llamacpp_hybrid.ts";

/** The built programs. */
export interface RpcPrograms {
  /** Source commit the programs were built from. */
  commit: string;
  /** `<cache>/llama.cpp-rpc/<commit12>`. */
  dir: string;
  rpcServer: string;
  completion: string;
}

/** CMake options: CPU backend + RPC, static, portable, no tests, examples, server or HTTPS. */
export const RPC_CMAKE_FLAGS: readonly string[] = [
  "-DCMAKE_BUILD_TYPE=Release",
  "-DGGML_RPC=ON",
  "-DGGML_NATIVE=OFF",
  "-DBUILD_SHARED_LIBS=OFF",
  "-DLLAMA_BUILD_TESTS=OFF",
  "-DLLAMA_BUILD_EXAMPLES=OFF",
  "-DLLAMA_BUILD_SERVER=OFF",
  "-DLLAMA_OPENSSL=OFF",
  "-DLLAMA_BUILD_UI=OFF",
];

/** CMake targets: the rpc-server (target ggml-rpc-server) and the one-shot generation program. */
export const RPC_TARGETS: readonly string[] = ["ggml-rpc-server", "llama-completion"];

/** The bundled llama.cpp source: the bundle file and its head commit, or why not. */
export function bundledSource(bundle?: string): { bundle: string; commit: string } | { missing: string } {
  const root = runtimesDir();
  const file = bundle ?? (root ? join(root, "..", "..", "node_modules", "node-llama-cpp", "llama", "gitRelease.bundle") : "");
  if (!file || !existsSync(file)) return { missing: `llama.cpp source bundle not found (${file || "no package root"}; npm ci installs node-llama-cpp)` };
  try {
    const commit = execFileSync("git", ["bundle", "list-heads", file], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split(" ")[0]!.trim();
    return { bundle: file, commit };
  } catch (e) {
    return { missing: `cannot read the source commit of ${file}: ${(e as Error).message}` };
  }
}

function programsIn(dir: string, commit: string): RpcPrograms {
  return { commit, dir, rpcServer: join(dir, "bin", "rpc-server"), completion: join(dir, "bin", "llama-completion") };
}

/** The cached build of the bundled source, or null when it is not built yet. */
export function builtRpcPrograms(opts: { bundle?: string; cache?: string } = {}): RpcPrograms | null {
  const src = bundledSource(opts.bundle);
  if ("missing" in src) return null;
  const p = programsIn(join(opts.cache ?? cacheDir(), "llama.cpp-rpc", src.commit.slice(0, 12)), src.commit);
  return existsSync(p.rpcServer) && existsSync(p.completion) ? p : null;
}

function run(argv: string[], cwd: string | undefined, log: (s: string) => void, env?: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd, env: env ?? process.env, stdio: ["ignore", "pipe", "pipe"], shell: false });
    let tail = "";
    const take = (d: Buffer): void => {
      const s = d.toString();
      tail = (tail + s).slice(-4000);
      log(s);
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("error", (e) => reject(new LaunchError(`${argv[0]}: ${e.message}`, { cause: e })));
    child.on("close", (code) => (code === 0 ? resolve() : reject(new LaunchError(`${argv.join(" ")} exited ${code}:\n${tail}`))));
  });
}

/**
 * Build (or return the cached) rpc-server and llama-completion. The source is cloned from the
 * bundle into `<dir>/src`, built in `<dir>/build` (kept for incremental rebuilds), and the two
 * static binaries are copied to `<dir>/bin` last, by rename, so a half-built tree is never taken
 * for a build. Needs git, cmake, a C++ compiler (ninja and ccache used when present).
 */
export async function buildRpcPrograms(opts: { bundle?: string; cache?: string; jobs?: number; log?: (s: string) => void } = {}): Promise<RpcPrograms> {
  const have = builtRpcPrograms(opts);
  if (have) return have;
  const src = bundledSource(opts.bundle);
  if ("missing" in src) throw new LaunchError(src.missing);
  const log = opts.log ?? (() => {});
  const dir = join(opts.cache ?? cacheDir(), "llama.cpp-rpc", src.commit.slice(0, 12));
  const source = join(dir, "src");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!existsSync(join(source, "CMakeLists.txt"))) {
    rmSync(source, { recursive: true, force: true });
    await run(["git", "clone", "--quiet", src.bundle, source], undefined, log);
    await run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", src.commit], source, log);
  }
  const build = join(dir, "build");
  const flags = [...RPC_CMAKE_FLAGS];
  if (hasProgram("ninja")) flags.push("-G", "Ninja");
  if (hasProgram("ccache")) flags.push("-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache");
  await run(["cmake", "-S", source, "-B", build, ...flags], undefined, log);
  const jobs = String(opts.jobs ?? 2);
  // ccache keys on paths relative to <dir> (src/ and build/ siblings): a build of the same commit
  // in another cache directory (CI, a second user) reuses the objects.
  await run(["cmake", "--build", build, "-j", jobs, "--target", ...RPC_TARGETS], undefined, log, { ...process.env, CCACHE_BASEDIR: dir, CCACHE_NOHASHDIR: "1" });
  const bin = join(dir, "bin");
  mkdirSync(bin, { recursive: true });
  const out = programsIn(dir, src.commit);
  for (const [from, to] of [[join(build, "bin", "ggml-rpc-server"), out.rpcServer], [join(build, "bin", "llama-completion"), out.completion]] as const) {
    const tmp = `${to}.tmp${process.pid}`;
    copyFileSync(from, tmp);
    renameSync(tmp, to);
  }
  return out;
}
