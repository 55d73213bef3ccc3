/**
 * Short real trials of a configuration with llama-bench: choose token counts that fit a time
 * budget, run the program (in its own process group, killed on timeout), parse its JSON output.
 * @module
 */
import { spawn } from "node:child_process";
import { LaunchError, RuntimeMissingError } from "../../core/errors.ts";

/** Measured speed of one trial. */
export interface TrialMeasurement {
  /** Prompt processing tokens/s (0 when the trial ran no prompt). */
  prefillTps: number;
  /** Generation tokens/s (0 when the trial generated nothing). */
  decodeTps: number;
  /** Wall time of the whole run including model load, seconds. */
  wallSeconds: number;
}

/** Token counts and repetitions of one llama-bench trial. */
export interface TrialCounts {
  promptTokens: number;
  genTokens: number;
  repetitions: number;
}

/**
 * Token counts for a trial of about `trialSeconds` of measuring (model load not included): the
 * workload's prompt length up to 4096 (prefill speed depends on it), enough generated tokens for a
 * stable decode figure, and as many repetitions (1..3) as the predicted speeds allow.
 */
export function trialCounts(
  workload: { promptTokens: number; generatedTokens: number },
  predicted: { prefillTps: number; decodeTps: number },
  trialSeconds: number,
): TrialCounts {
  const promptTokens = Math.min(Math.max(0, Math.round(workload.promptTokens)), 4096);
  const decodeTps = predicted.decodeTps > 0 ? predicted.decodeTps : 10;
  const prefillTps = predicted.prefillTps > 0 ? predicted.prefillTps : 100;
  const genTokens = workload.generatedTokens <= 0
    ? 0
    : Math.max(16, Math.min(128, workload.generatedTokens, Math.round(decodeTps * trialSeconds * 0.4)));
  const rep = promptTokens / prefillTps + genTokens / decodeTps;
  const repetitions = Math.max(1, Math.min(3, Math.floor(trialSeconds / Math.max(rep, 1e-3))));
  return { promptTokens, genTokens, repetitions };
}

/**
 * Parse llama-bench `-o json` output: an array of tests, prompt tests (`n_prompt` > 0, `n_gen` 0)
 * and generation tests (`n_gen` > 0), each with `avg_ts` (tokens/s). Log lines around the array
 * are ignored.
 * @throws LaunchError when no JSON array of tests is found.
 */
export function parseLlamaBenchJson(text: string): { prefillTps: number; decodeTps: number } {
  const start = text.indexOf("[");
  const end = text.lastIndexOf("]");
  if (start < 0 || end < start) throw new LaunchError(`llama-bench printed no JSON array: ${JSON.stringify(text.slice(0, 300))}`);
  let tests: unknown;
  try {
    tests = JSON.parse(text.slice(start, end + 1));
  } catch (e) {
    throw new LaunchError(`llama-bench output is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (!Array.isArray(tests)) throw new LaunchError("llama-bench output is not a JSON array");
  let prefillTps = 0;
  let decodeTps = 0;
  for (const t of tests as Record<string, unknown>[]) {
    const ts = Number(t.avg_ts);
    if (!(ts > 0)) continue;
    if (Number(t.n_gen) > 0) decodeTps = ts;
    else if (Number(t.n_prompt) > 0) prefillTps = ts;
  }
  if (prefillTps === 0 && decodeTps === 0) throw new LaunchError("llama-bench output has no test with avg_ts > 0");
  return { prefillTps, decodeTps };
}

/**
 * Run one llama-bench trial: `argv[0]` with the rest as arguments, `env` added to the environment.
 * The child gets its own process group and is killed with it after `timeoutMs`.
 * @throws RuntimeMissingError when the program does not exist; LaunchError when it fails.
 */
export function runLlamaBench(argv: string[], env: Record<string, string>, timeoutMs: number): Promise<TrialMeasurement> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let out = "";
    let err = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => {
      err += d;
      if (err.length > 1 << 20) err = err.slice(-(1 << 19));
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch { /* already gone */ }
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      if ((e as { code?: string }).code === "ENOENT") {
        reject(new RuntimeMissingError("llama.cpp", argv[0], "autotune runs llama-bench: build llama.cpp's llama-bench target and put it on PATH, or pass its path.", { cause: e }));
      } else reject(new LaunchError(`${argv[0]}: ${e.message}`, { cause: e }));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const wallSeconds = (performance.now() - t0) / 1000;
      if (timedOut) return reject(new LaunchError(`${argv.join(" ")}: no result within ${Math.round(timeoutMs / 1000)} s; killed`));
      if (code !== 0) {
        const tail = err.trim().split("\n").slice(-5).join("\n");
        return reject(new LaunchError(`${argv.join(" ")}: exited with ${code ?? signal}: ${tail}`));
      }
      try {
        resolve({ ...parseLlamaBenchJson(out), wallSeconds });
      } catch (e) {
        reject(e);
      }
    });
  });
}
