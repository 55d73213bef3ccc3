/**
 * The one hashed native builder: C sources compiled into a cache directory named by a hash of the
 * sources and flags (a change of either builds afresh; an unchanged one is reused), written under
 * a temporary name and renamed, so a concurrent reader never runs half a file. Used for the CUDA
 * shim (shim/build.ts) and the measurement helpers (engine/hardware/measure/native.ts).
 *
 * @example
 * ```ts
 * import { compile, sourceHash } from "./native_build.ts";
 * const out = `/tmp/cache/tool-${sourceHash(["tool.c"], ["-O2"])}`;
 * const failed = await compile("gcc", (tmp) => ["-O2", "-o", tmp, "tool.c"], out);
 * if (failed) throw new Error(failed.missingCompiler ? "install gcc" : failed.output);
 * ```
 *
 * @module
 */
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import process from "node:process";

/**
 * sha256 (hex, first `length` characters) over each file (its name with `root` cut off, when
 * given, then its bytes) and the flags.
 */
export function sourceHash(files: readonly string[], flags: readonly string[], options: { root?: string; length?: number } = {}): string {
  const h = createHash("sha256");
  for (const f of files) {
    if (options.root !== undefined) h.update(f.slice(options.root.length)).update("\0");
    h.update(readFileSync(f));
  }
  h.update(flags.join("\0"));
  return h.digest("hex").slice(0, options.length ?? 16);
}

/** Why a compile failed: the compiler could not be started, or it exited non-zero with `output`. */
export interface CompileFailure {
  /** The compiler program was not found (ENOENT) or could not be run. */
  missingCompiler: boolean;
  /** The compiler's output, or the spawn error's message. */
  output: string;
  /** Exit status of the compiler (1 when it could not be run). */
  code: number;
  cause: Error;
}

function tmpName(out: string): string {
  return `${out}.tmp${process.pid}`;
}

function failure(e: NodeJS.ErrnoException & { code?: number | string; stderr?: Uint8Array | string; stdout?: Uint8Array | string; status?: number | null }, extra = ""): CompileFailure {
  const missing = typeof e.code === "string";
  const text = (v: Uint8Array | string | undefined): string => (v === undefined ? "" : typeof v === "string" ? v : new TextDecoder().decode(v));
  const output = missing ? e.message : `${text(e.stdout)}${text(e.stderr)}${extra}`.trim() || e.message;
  return { missingCompiler: missing, output, code: missing ? 1 : typeof e.code === "number" ? e.code : e.status ?? 1, cause: e };
}

/**
 * Runs `cc` with `args(tmp)` (the arguments naming the temporary output) and renames the result to
 * `out`. Resolves with null on success, or the failure (the temporary file removed).
 */
export function compile(cc: string, args: (tmp: string) => string[], out: string): Promise<CompileFailure | null> {
  mkdirSync(dirname(out), { recursive: true });
  const tmp = tmpName(out);
  return new Promise((done) => {
    execFile(cc, args(tmp), { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        rmSync(tmp, { force: true });
        done(failure(err as NodeJS.ErrnoException, `${stdout}${stderr}`));
        return;
      }
      renameSync(tmp, out);
      done(null);
    });
  });
}

/**
 * {@link compile} without waiting on the event loop; `attempts` are tried in order (e.g. with and
 * without `-march=native`) until one builds. Returns null on success, or the last failure.
 */
export function compileSync(cc: string, attempts: ((tmp: string) => string[])[], out: string): CompileFailure | null {
  mkdirSync(dirname(out), { recursive: true });
  const tmp = tmpName(out);
  let last: CompileFailure | null = null;
  for (const args of attempts) {
    try {
      execFileSync(cc, args(tmp), { stdio: "pipe" });
      renameSync(tmp, out);
      return null;
    } catch (e) {
      last = failure(e as NodeJS.ErrnoException);
    }
  }
  rmSync(tmp, { force: true });
  return last;
}

/**
 * Whether `name` runs (`name --version` exits 0): for optional build tools (ninja, ccache) and
 * tests that need a toolchain.
 *
 * @example
 * ```ts
 * const generator = hasProgram("ninja") ? ["-G", "Ninja"] : [];
 * ```
 */
export function hasProgram(name: string): boolean {
  try {
    execFileSync(name, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
