/**
 * `spillway kmod build|load|unload|status`: the kernel module's command, for the main CLI to wire.
 *
 * @example
 * ```ts
 * import { kmodCommand } from "./kmod.ts";
 * process.exitCode = await kmodCommand("status", {});
 * ```
 *
 * @module
 */
import { existsSync } from "node:fs";
import { SpillwayError } from "../core/errors.ts";
import {
  buildModule,
  defaultBuildDir,
  formatStatus,
  loadModule,
  MODULE_NAME,
  moduleStatus,
  type StatusPaths,
  unloadModule,
} from "../kmod/loader.ts";
import { join } from "node:path";
import { DEVICE_PATH } from "../kmod/uapi.ts";

/** The actions of `spillway kmod`. */
export type KmodAction = "build" | "load" | "unload" | "status";

/** Options of {@linkcode kmodCommand} (cac passes its parsed flags). */
export interface KmodOptions {
  /** Kernel build directory for `build` (default /lib/modules/$(uname -r)/build). */
  kernelDir?: string;
  /** Build directory (default $SPILLWAY_CACHE/kmod/<release>). */
  buildDir?: string;
  /** For `load`: the .ko to load (default: the one in the build directory, built first if missing). */
  ko?: string;
  /** For `load`: module parameters, e.g. "group=1000 pool_limit_bytes=68719476736". */
  params?: string | readonly string[];
  /** For `status`: print JSON. */
  json?: boolean;
  /** For `status`: read other paths (tests). */
  paths?: StatusPaths;
  /** Output sinks (default console.log / console.error). */
  print?: (line: string) => void;
  printError?: (line: string) => void;
}

/**
 * Run one `spillway kmod` action. Returns the exit code: 0 on success; 1 on failure, and for
 * `status` when the module is not loaded. Errors are printed, not thrown.
 */
export async function kmodCommand(action: KmodAction, opts: KmodOptions = {}): Promise<number> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const printError = opts.printError ?? ((l: string) => console.error(l));
  try {
    switch (action) {
      case "build": {
        const r = buildModule({ kernelDir: opts.kernelDir, buildDir: opts.buildDir });
        print(`built ${r.ko} against ${r.kernelDir}`);
        return 0;
      }
      case "load": {
        let ko = opts.ko;
        if (!ko) {
          ko = join(opts.buildDir ?? defaultBuildDir(), "src", `${MODULE_NAME}.ko`);
          if (!existsSync(ko)) {
            ko = buildModule({ kernelDir: opts.kernelDir, buildDir: opts.buildDir }).ko;
            print(`built ${ko}`);
          }
        }
        const params = Array.isArray(opts.params) ? opts.params.join(" ") : (opts.params as string | undefined) ?? "";
        await loadModule(ko, params);
        // devtmpfs creates the node asynchronously
        for (let i = 0; i < 40 && !existsSync(DEVICE_PATH); i++) await new Promise((r) => setTimeout(r, 50));
        print(`loaded ${ko}${params ? ` (${params})` : ""}; ${existsSync(DEVICE_PATH) ? DEVICE_PATH : "no device node yet"}`);
        return 0;
      }
      case "unload":
        await unloadModule(MODULE_NAME);
        print(`unloaded ${MODULE_NAME}`);
        return 0;
      case "status": {
        const s = moduleStatus(opts.paths);
        print(opts.json ? JSON.stringify(s, null, 2) : formatStatus(s));
        return s.loaded ? 0 : 1;
      }
      default:
        printError(`spillway kmod: unknown action '${String(action)}' (build, load, unload, status)`);
        return 1;
    }
  } catch (e) {
    if (e instanceof SpillwayError) {
      printError(`spillway kmod ${action}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
