/**
 * One error class per failure kind. Each message says what to do; the underlying error, when
 * there is one, is attached as `cause`.
 *
 * @example
 * ```ts
 * import { RecipeSchemaError, SpillwayError } from "./errors.ts";
 * try {
 *   throw new RecipeSchemaError("recipes/x.json5", "runtime", "must be one of llama.cpp, vllm");
 * } catch (e) {
 *   if (e instanceof SpillwayError) console.error(e.message);
 * }
 * ```
 *
 * @module
 */

/** Base class of every error spillway throws on purpose. */
export class SpillwayError extends Error {
  /** Stable machine-readable kind, e.g. `recipe-syntax`. */
  readonly kind: string = "spillway";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A recipe file is not valid JSON5. */
export class RecipeSyntaxError extends SpillwayError {
  override readonly kind = "recipe-syntax";
  constructor(
    readonly file: string,
    readonly line: number,
    readonly column: number,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}:${line}:${column}: ${detail}`, options);
  }
}

/** A recipe parses but a field is missing, mistyped, unknown or out of range. */
export class RecipeSchemaError extends SpillwayError {
  override readonly kind = "recipe-schema";
  constructor(readonly file: string, readonly path: string, detail: string, options?: { cause?: unknown }) {
    super(`${file}: ${path}: ${detail}`, options);
  }
}

/** A model file is missing, truncated, or not a format spillway reads. */
export class ModelFileError extends SpillwayError {
  override readonly kind = "model-file";
  constructor(readonly file: string, detail: string, options?: { cause?: unknown }) {
    super(`${file}: ${detail}`, options);
  }
}

/** Probing the hardware failed in a way the user must know about. */
export class HardwareProbeError extends SpillwayError {
  override readonly kind = "hardware-probe";
}

/** A native library could not be loaded or a symbol is missing. */
export class FfiLoadError extends SpillwayError {
  override readonly kind = "ffi-load";
  constructor(readonly path: string, detail: string, options?: { cause?: unknown }) {
    super(`cannot load native library ${path}: ${detail}`, options);
  }
}

/** The runtime a recipe names is not installed. */
export class RuntimeMissingError extends SpillwayError {
  override readonly kind = "runtime-missing";
  constructor(readonly runtime: string, readonly binary: string, hint: string, options?: { cause?: unknown }) {
    super(`${runtime}: '${binary}' was not found. ${hint}`, options);
  }
}

/** Launching or running the child process failed. */
export class LaunchError extends SpillwayError {
  override readonly kind = "launch";
}

/** The kernel module could not be built, loaded, unloaded or driven. */
export class KernelModuleError extends SpillwayError {
  override readonly kind = "kernel-module";
  constructor(message: string, readonly errno?: number, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The planner could not find any placement that fits. */
export class PlanError extends SpillwayError {
  override readonly kind = "plan";
}

/** The user interrupted long work (Ctrl-C); what it had half done was removed. */
export class InterruptedError extends SpillwayError {
  override readonly kind = "interrupted";
}
