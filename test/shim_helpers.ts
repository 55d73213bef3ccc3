/**
 * Shared by the shim tests: builds the fake CUDA libraries and the test program once into one
 * content-hashed directory (so LD_LIBRARY_PATH finds all of them), builds the shim through
 * shim/build.ts into the test cache, and runs the program under LD_PRELOAD.
 *
 * @module
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { locateShim } from "../shim/build.ts";
import { CACHE_DIR, ROOT } from "./_native.ts";

const FX = "test/fixtures/fakecuda";
const HEADERS = ["shim/include/spillway_cuda.h", "shim/include/spillway_stats.h"];
const UAPI = "kmod/include/uapi/spillway.h";
const LIB = ["-O2", "-Wall", "-shared", "-fPIC", "-fvisibility=hidden", "-Wl,-Bsymbolic"];

/** gcc invocations, each: output name and arguments (relative source paths are resolved from ROOT). */
function recipes(dir: string): [string, string[]][] {
  const src = (f: string) => join(ROOT, FX, f);
  return [
    ["libcuda.so.1", [...LIB, "-Wl,-soname,libcuda.so.1", src("fakecuda.c"), "-lpthread"]],
    ["libcudart.so.12", [...LIB, "-DFAKE_CUDART=12", "-Wl,-soname,libcudart.so.12", src("fakecudart.c"), "-ldl", "-lpthread"]],
    ["libcudart.so.13", [...LIB, "-DFAKE_CUDART=13", "-Wl,-soname,libcudart.so.13", src("fakecudart.c"), "-ldl", "-lpthread"]],
    ["libnvidia-ml.so.1", [...LIB, "-Wl,-soname,libnvidia-ml.so.1", src("fakenvml.c"), `-L${dir}`, "-l:libcuda.so.1"]],
    ["libfakekmod.so", [...LIB, src("fakekmod.c"), "-ldl"]],
    ["shimprog12", ["-O2", "-Wall", src("shimprog.c"), `-L${dir}`, "-l:libcuda.so.1", "-l:libcudart.so.12", "-ldl", "-lpthread"]],
    ["shimprog13", ["-O2", "-Wall", src("shimprog.c"), `-L${dir}`, "-l:libcuda.so.1", "-l:libcudart.so.13", "-ldl", "-lpthread"]],
    ["vmmprog", ["-O2", "-Wall", src("vmmprog.c"), `-L${dir}`, "-l:libcuda.so.1", "-l:libcudart.so.13", "-ldl"]],
  ];
}

let fakeDir: string | null = null;

/** Directory holding the fake libcuda.so.1, libcudart.so.12/13, libnvidia-ml.so.1 and shimprog12/13. */
export function fakeCudaDir(): string {
  if (fakeDir) return fakeDir;
  const h = createHash("sha256");
  for (const f of ["fakecuda.c", "fakecudart.c", "fakenvml.c", "fakekmod.c", "shimprog.c", "vmmprog.c"]) h.update(f).update(readFileSync(join(ROOT, FX, f)));
  for (const f of [...HEADERS, UAPI]) h.update(f).update(readFileSync(join(ROOT, f)));
  h.update(JSON.stringify(recipes("")));
  const dir = join(CACHE_DIR, `fakecuda-${h.digest("hex").slice(0, 16)}`);
  if (!existsSync(join(dir, "done"))) {
    // Build in a private directory and rename it into place: concurrent test runs never see half of it.
    const tmp = `${dir}.tmp${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    for (const [name, args] of recipes(tmp)) execFileSync("gcc", ["-o", join(tmp, name), ...args], { stdio: "pipe" });
    writeFileSync(join(tmp, "fake-spillway"), ""); // the device node fakekmod answers for
    writeFileSync(join(tmp, "done"), "");
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true }); // another run won the race; its build is identical
    }
  }
  return (fakeDir = dir);
}

/** The shim, built by shim/build.ts into the test cache. */
export function testShim(): Promise<string> {
  return locateShim({ cacheDir: join(CACHE_DIR, "shim") });
}

/** What the program printed, one object per line, and its stderr. */
export interface ProgResult {
  status: number | null;
  lines: Record<string, any>[];
  stderr: string;
}

/** Options of {@linkcode runProg}. */
export interface RunOptions {
  /** Preload the shim (default true). */
  shim?: boolean;
  /** Preload the fake /dev/spillway (test/fixtures/fakecuda/fakekmod.c) after the shim. */
  kmod?: boolean;
  /** Program linked against libcudart.so.12 or .13 (default 13). */
  runtime?: 12 | 13;
  /** Run test/fixtures/fakecuda/vmmprog.c instead of shimprog (VMM, managed, pitched, two devices). */
  prog?: "vmmprog";
  env?: Record<string, string>;
  input?: string;
}

/** Run shimprog with the given operations under the fake CUDA libraries (and the shim). */
export async function runProg(ops: string[], options: RunOptions = {}): Promise<ProgResult> {
  const dir = fakeCudaDir();
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    LD_LIBRARY_PATH: dir,
    SPILLWAY_LOG: "warn",
    ...options.env,
  };
  if (options.shim !== false) env.LD_PRELOAD = await testShim();
  if (options.kmod) {
    env.LD_PRELOAD = `${env.LD_PRELOAD}:${join(dir, "libfakekmod.so")}`;
    env.FAKEKMOD_DEVICE = env.SPILLWAY_KMOD_DEVICE = join(dir, "fake-spillway");
  }
  const r = spawnSync(join(dir, options.prog ?? `shimprog${options.runtime ?? 13}`), ops, { env, encoding: "utf8", input: options.input ?? "", timeout: 30_000 });
  if (r.error) throw r.error;
  const lines = r.stdout.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  return { status: r.status, lines, stderr: r.stderr };
}

/** The lines of one operation kind. */
export function ofOp(r: ProgResult, op: string): Record<string, any>[] {
  return r.lines.filter((l) => l.op === op);
}

/** Fixed-size test numbers. */
export const MiB = 1024 * 1024;
