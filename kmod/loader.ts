/**
 * Build, load, unload and inspect the spillway kernel module: `make -C <kernel build dir> M=...`,
 * finit_module(2) and delete_module(2) through the FFI core's libc `syscall`, and the module's
 * sysfs files.
 *
 * @example
 * ```ts
 * import { moduleStatus, formatStatus } from "./loader.ts";
 * console.log(formatStatus(moduleStatus()));
 * ```
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { release } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { KernelModuleError } from "../core/errors.ts";
import { libc, O, SYS } from "../ffi/libc.ts";
import { kmodError } from "./errno.ts";
import { DEVICE_PATH, PARAMS_DIR, SYSFS_DIR } from "./uapi.ts";
import { cacheDir } from "../core/paths.ts";

/** The module's name, as the kernel knows it. */
export const MODULE_NAME = "spillway";

/** Exactly what `status` says when the module is not there. */
export const NOT_LOADED_MESSAGE = "spillway kernel module is not loaded (/dev/spillway and /sys/class/spillway absent)";

const KMOD_DIR = dirname(fileURLToPath(import.meta.url));

/** The kernel build directory of a release: `/lib/modules/<release>/build`. */
export function defaultKernelDir(kernelRelease: string = release()): string {
  return `/lib/modules/${kernelRelease}/build`;
}

/** Where `buildModule` builds by default: `$SPILLWAY_CACHE/kmod/<release>` (cache: ~/.cache/spillway). */
export function defaultBuildDir(kernelRelease: string = release()): string {
  const cache = cacheDir();
  return join(cache, "kmod", kernelRelease);
}

/** Options of {@linkcode buildModule}. */
export interface BuildOptions {
  /** Kernel build directory (default: /lib/modules/$(uname -r)/build). */
  kernelDir?: string;
  /** Directory the sources are copied to and built in (default: {@linkcode defaultBuildDir}). */
  buildDir?: string;
  /** make program (default `make`). */
  make?: string;
}

/** What {@linkcode buildModule} produced. */
export interface BuildResult {
  /** Path of the built spillway.ko. */
  readonly ko: string;
  readonly kernelDir: string;
  readonly buildDir: string;
  /** make's combined output. */
  readonly log: string;
}

/**
 * Build spillway.ko out of the repository tree: copies kmod/src and kmod/include into the build
 * directory and runs `make -C <kernelDir> M=<buildDir>/src modules` there.
 * @throws KernelModuleError when the kernel build directory is missing or make fails (with its output).
 */
export function buildModule(opts: BuildOptions = {}): BuildResult {
  const kernelDir = resolve(opts.kernelDir ?? defaultKernelDir());
  const buildDir = resolve(opts.buildDir ?? defaultBuildDir());
  if (!existsSync(join(kernelDir, "Makefile"))) {
    throw new KernelModuleError(
      `kernel build directory ${kernelDir} not found (no Makefile): install the headers of kernel ` +
        `${release()} (Debian/Ubuntu: apt-get install linux-headers-${release()}) or pass --kdir <dir> (the kernel build directory)`,
    );
  }
  mkdirSync(buildDir, { recursive: true });
  for (const part of ["src", "include"]) {
    rmSync(join(buildDir, part), { recursive: true, force: true });
    cpSync(join(KMOD_DIR, part), join(buildDir, part), { recursive: true });
  }
  const make = opts.make ?? "make";
  const args = ["-C", kernelDir, `M=${join(buildDir, "src")}`, "modules"];
  const r = spawnSync(make, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const log = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  if (r.error) {
    throw new KernelModuleError(`cannot run ${make}: ${r.error.message}`, undefined, { cause: r.error });
  }
  const ko = join(buildDir, "src", `${MODULE_NAME}.ko`);
  if (r.status !== 0 || !existsSync(ko)) {
    const tail = log.trim().split("\n").slice(-25).join("\n");
    throw new KernelModuleError(
      `building ${MODULE_NAME}.ko failed: ${make} ${args.join(" ")} exited with ${r.status}` +
        (existsSync(ko) ? "" : ` and produced no ${ko}`) + `\n${tail}`,
    );
  }
  return { ko, kernelDir, buildDir, log };
}

/** Module parameters: a ready string (`group=4242 debug_ioctls=1`) or name/value pairs. */
export type ModuleParams = string | Readonly<Record<string, string | number | bigint | boolean>>;

/** Turn parameters into the string finit_module takes; rejects names or values it would mis-split. */
export function formatParams(params: ModuleParams = ""): string {
  const pairs: [string, string][] = typeof params === "string"
    ? params.trim().split(/\s+/).filter(Boolean).map((p) => {
      const eq = p.indexOf("=");
      return eq < 0 ? [p, ""] : [p.slice(0, eq), p.slice(eq + 1)];
    })
    : Object.entries(params).map(([k, v]) => [k, typeof v === "boolean" ? (v ? "1" : "0") : String(v)]);
  return pairs.map(([k, v]) => {
    if (!/^[a-z_][a-z0-9_]*$/.test(k)) throw new KernelModuleError(`module parameter name '${k}' is not valid`);
    if (/[\s"\\]/.test(v)) throw new KernelModuleError(`module parameter ${k}: value '${v}' has a space, quote or backslash`);
    return v === "" ? k : `${k}=${v}`;
  }).join(" ");
}

const LOAD_HINTS: Readonly<Record<number, string>> = {
  1: "loading kernel modules needs root (CAP_SYS_MODULE), and the kernel must allow it (kernel.modules_disabled, lockdown)",
  2: "the module needs a symbol this kernel lacks (is CONFIG_DMA_SHARED_BUFFER enabled? see dmesg)",
  8: "not a module for this kernel: rebuild it against this kernel's headers (spillway kmod build)",
  17: "it is already loaded (spillway kmod unload first)",
  22: "the kernel rejected the module or its parameters (see dmesg)",
  38: "this kernel has no module support",
  74: "the module's signature is rejected: this kernel enforces signed modules; sign spillway.ko",
  129: "the module's signature is rejected: this kernel enforces signed modules; sign spillway.ko",
};

/**
 * Refuse, as root, a module file that someone other than root could have written: root would
 * load their code into the kernel (a .ko built in a user's cache directory, loaded under sudo).
 * Checked on the opened descriptor (/proc/self/fd), so the file cannot be swapped after the check.
 * @throws KernelModuleError when the file is not root's or is writable by group or others.
 */
export function checkModuleFileOwner(ko: string, fd: number, euid: number | undefined = process.geteuid?.()): void {
  if (euid !== 0) return; // not root: the kernel refuses the load anyway (EPERM)
  const st = statSync(`/proc/self/fd/${fd}`);
  const fix = `rebuild it as root (sudo spillway kmod build: root's own cache directory), chown root and chmod go-w it, ` +
    `or pass --ko with a root-owned file`;
  if (!st.isFile()) throw new KernelModuleError(`module file ${ko} is not a regular file`);
  if (st.uid !== 0) {
    throw new KernelModuleError(`module file ${ko} is owned by uid ${st.uid}, not root: refusing to load code another user can change; ${fix}`);
  }
  if (st.mode & 0o022) {
    throw new KernelModuleError(
      `module file ${ko} is writable by ${st.mode & 0o020 ? "its group" : "others"} (mode ${(st.mode & 0o7777).toString(8).padStart(4, "0")}): ` +
        `refusing to load code another user can change; ${fix}`,
    );
  }
}

/**
 * Load a built module with finit_module(2). As root, the file must be root's and not writable
 * by group or others ({@linkcode checkModuleFileOwner}).
 * @throws KernelModuleError naming the file and the decoded errno.
 */
export async function loadModule(ko: string, params: ModuleParams = ""): Promise<void> {
  const c = await libc();
  const paramString = formatParams(params);
  if (!existsSync(ko)) throw new KernelModuleError(`module file ${ko} not found: build it first (spillway kmod build)`);
  const fd = c.open(ko, O.RDONLY | O.CLOEXEC);
  if (fd < 0) throw kmodError(c, `opening ${ko}`, c.errno());
  const bytes = new TextEncoder().encode(`${paramString}\0`);
  try {
    checkModuleFileOwner(ko, fd);
    const r = c.syscall(SYS.finit_module, BigInt(fd), c.ffi.addressOf(bytes), 0n);
    if (r < 0n) throw kmodError(c, `loading ${ko}${paramString ? ` (${paramString})` : ""}`, c.errno(), LOAD_HINTS);
  } finally {
    c.close(fd);
  }
}

const UNLOAD_HINTS: Readonly<Record<number, string>> = {
  1: "unloading kernel modules needs root (CAP_SYS_MODULE)",
  2: "it is not loaded",
  38: "this kernel has no module support",
  11: "it is in use: close /dev/spillway and every buffer (DMA-BUF fds and mappings) first",
  16: "it is in use: close /dev/spillway and every buffer (DMA-BUF fds and mappings) first",
};

/**
 * Unload with delete_module(2) (O_NONBLOCK: fails instead of waiting while in use).
 * @throws KernelModuleError with the decoded errno.
 */
export async function unloadModule(name: string = MODULE_NAME): Promise<void> {
  const c = await libc();
  const bytes = new TextEncoder().encode(`${name}\0`);
  const O_NONBLOCK = 0o4000n;
  const r = c.syscall(SYS.delete_module, c.ffi.addressOf(bytes), O_NONBLOCK);
  if (r < 0n) throw kmodError(c, `unloading ${name}`, c.errno(), UNLOAD_HINTS);
}

/** The module's state as sysfs and /dev show it. */
export interface ModuleStatus {
  readonly loaded: boolean;
  /** One-line summary (the "not loaded" sentence when absent). */
  readonly message: string;
  readonly device: { readonly path: string; readonly exists: boolean; readonly mode?: string; readonly gid?: number };
  readonly limitBytes?: number;
  readonly usedBytes?: number;
  readonly buffers?: number;
  readonly pressure?: string;
  /** The human-readable pool_info file. */
  readonly poolInfo?: string;
  /** /sys/module/spillway/parameters/*. */
  readonly params: Readonly<Record<string, string>>;
}

/** Where {@linkcode moduleStatus} looks (overridable to read a copy of the tree). */
export interface StatusPaths {
  devicePath?: string;
  sysfsDir?: string;
  paramsDir?: string;
}

function readTrim(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}

function readNumber(path: string): number | undefined {
  const s = readTrim(path);
  if (s === undefined || !/^\d+$/.test(s)) return undefined;
  return Number(s);
}

/** Read the module's state from sysfs; never throws. */
export function moduleStatus(paths: StatusPaths = {}): ModuleStatus {
  const devicePath = paths.devicePath ?? DEVICE_PATH;
  const sysfsDir = paths.sysfsDir ?? SYSFS_DIR;
  const paramsDir = paths.paramsDir ?? PARAMS_DIR;
  let device: ModuleStatus["device"] = { path: devicePath, exists: false };
  try {
    const st = statSync(devicePath);
    device = { path: devicePath, exists: true, mode: (st.mode & 0o7777).toString(8).padStart(4, "0"), gid: st.gid };
  } catch { /* absent */ }
  const params: Record<string, string> = {};
  try {
    for (const p of readdirSync(paramsDir)) {
      const v = readTrim(join(paramsDir, p));
      if (v !== undefined) params[p] = v;
    }
  } catch { /* not loaded */ }
  if (!existsSync(sysfsDir)) {
    return {
      loaded: false,
      message: device.exists
        ? `spillway kernel module is not loaded (${sysfsDir} absent; ${devicePath} exists but is stale)`
        : NOT_LOADED_MESSAGE,
      device,
      params,
    };
  }
  const limitBytes = readNumber(join(sysfsDir, "pool_limit_bytes"));
  const usedBytes = readNumber(join(sysfsDir, "pool_used_bytes"));
  const buffers = readNumber(join(sysfsDir, "buffers"));
  const pressure = readTrim(join(sysfsDir, "pressure"));
  const poolInfo = readTrim(join(sysfsDir, "pool_info"));
  const gib = (n?: number) => (n === undefined ? "?" : `${(n / 2 ** 30).toFixed(2)} GiB`);
  return {
    loaded: true,
    message: `spillway kernel module is loaded: ${gib(usedBytes)} of ${gib(limitBytes)} in ${buffers ?? "?"} ` +
      `buffers, memory pressure ${pressure ?? "?"}` + (device.exists ? "" : `; but ${devicePath} is missing`),
    device,
    limitBytes,
    usedBytes,
    buffers,
    pressure,
    poolInfo,
    params,
  };
}

/**
 * Control characters (C0 but newline, DEL, C1) as `\xHH`: pool_info carries other processes'
 * command names, which must not reach the terminal as escape sequences (an older module prints
 * them raw).
 * @example escapeControl("a\x1b[2Jb") // "a\\x1b[2Jb"
 */
export function escapeControl(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** Multi-line text for `spillway kmod status`. */
export function formatStatus(s: ModuleStatus): string {
  if (!s.loaded) return s.message;
  const lines = [s.message];
  lines.push(`device   ${s.device.path}${s.device.exists ? ` mode ${s.device.mode} gid ${s.device.gid}` : " (missing)"}`);
  const params = Object.entries(s.params).map(([k, v]) => `${k}=${v}`).join(" ");
  if (params) lines.push(`params   ${params}`);
  if (s.poolInfo) lines.push("pool_info:", ...escapeControl(s.poolInfo).split("\n").map((l) => `  ${l}`));
  else lines.push("pool_info: not readable by this user (mode 0440: root and the device's group)");
  return lines.join("\n");
}
