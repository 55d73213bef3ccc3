/**
 * Prompt reuse through llama-server's slot cache (issue 21): how long a saved long prompt takes to
 * be ready again (restore from `--slot-save-path` + the one token the next request evaluates)
 * against recomputing it. Runs against a started server (the server section, `slotRestore`):
 *
 * 1. erase slot 0; POST /completion of the prompt (cache_prompt on, 1 token): the recompute time
 *    is its `timings.prompt_ms`;
 * 2. save slot 0 to a file (`n_saved`, `n_written`, `save_ms`); erase slot 0;
 * 3. restore the file (`n_restored`, `n_read`, `restore_ms`, and our wall time);
 * 4. POST /completion of the same prompt again: only the tokens not restored are evaluated
 *    (`prompt_n`, normally 1); ready = restore wall time + that request's prompt_ms.
 *
 * The prompt must be one the server has not cached in RAM (`--cache-ram 0` in the section's args
 * keeps llama-server's host-memory prompt cache from answering instead of the file).
 *
 * @module
 */
import { postJson } from "./http.ts";

/** What {@link measureSlotRestore} found. */
export interface SlotRestoreResult {
  /** Prompt tokens. */
  prompt: number;
  /** Prompt evaluation from scratch, ms (timings.prompt_ms of step 1). */
  recomputeMs: number;
  saveMs: number;
  /** Bytes llama-server wrote to the slot file. */
  bytes: number;
  /** Server-side restore time, ms (`timings.restore_ms`). */
  restoreMs: number;
  /** Our wall time of the restore request, ms. */
  restoreWallMs: number;
  /** Tokens restored. */
  restored: number;
  /** Prompt tokens the request after the restore still evaluated, and their time. */
  afterPromptN: number;
  afterPromptMs: number;
  /** restoreWallMs + afterPromptMs: the prompt is ready to decode from. */
  readyMs: number;
  /** readyMs / recomputeMs (the target: under 0.1 for a 16k-token prompt). */
  ratio: number;
}

async function post(port: number, path: string, body: unknown, timeoutMs: number): Promise<{ json: Record<string, unknown>; ms: number }> {
  const { json, seconds } = await postJson(port, path, body, timeoutMs);
  return { json: json as Record<string, unknown>, ms: seconds * 1000 };
}

/** prompt_n and prompt_ms of a /completion response's timings. */
function promptTimings(o: Record<string, unknown>, what: string): { promptN: number; promptMs: number } {
  return { promptN: num(o, "timings.prompt_n", what), promptMs: num(o, "timings.prompt_ms", what) };
}

function num(o: Record<string, unknown>, path: string, what: string): number {
  let v: unknown = o;
  for (const k of path.split(".")) v = (v as Record<string, unknown> | undefined)?.[k];
  if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${what}: '${path}' missing in ${JSON.stringify(o).slice(0, 200)}`);
  return v;
}

/**
 * Measures recompute vs restore of `prompt` (token ids) in slot 0, saving to `filename` inside the
 * server's --slot-save-path directory. Throws naming the step that failed.
 */
export async function measureSlotRestore(port: number, prompt: number[], filename: string, timeoutMs: number): Promise<SlotRestoreResult> {
  const completion = { prompt, n_predict: 1, id_slot: 0, cache_prompt: true, temperature: 0, top_k: 1, seed: 1, stream: false };
  await post(port, "/slots/0?action=erase", {}, timeoutMs);
  const first = promptTimings((await post(port, "/completion", completion, timeoutMs)).json, "recompute");
  if (first.promptN < prompt.length - 1) throw new Error(`recompute: llama-server evaluated ${first.promptN} of ${prompt.length} prompt tokens (a cached prefix answered; start it with --cache-ram 0)`);
  const saved = (await post(port, "/slots/0?action=save", { filename }, timeoutMs)).json;
  await post(port, "/slots/0?action=erase", {}, timeoutMs);
  const r = await post(port, "/slots/0?action=restore", { filename }, timeoutMs);
  const after = promptTimings((await post(port, "/completion", completion, timeoutMs)).json, "after restore");
  const restored = num(r.json, "n_restored", "restore");
  const readyMs = r.ms + after.promptMs;
  return {
    prompt: prompt.length,
    recomputeMs: first.promptMs,
    saveMs: num(saved, "timings.save_ms", "save"),
    bytes: num(saved, "n_written", "save"),
    restoreMs: num(r.json, "timings.restore_ms", "restore"),
    restoreWallMs: r.ms,
    restored,
    afterPromptN: after.promptN,
    afterPromptMs: after.promptMs,
    readyMs,
    ratio: readyMs / first.promptMs,
  };
}

/** Markdown rows of the slot-restore measurements in a run (empty when none ran). */
export function slotRestoreMarkdown(results: { id: string; slotRestore?: SlotRestoreResult | { error: string } }[]): string[] {
  const rows = results.filter((r) => r.slotRestore !== undefined);
  if (rows.length === 0) return [];
  const out = [
    "",
    "## Prompt reuse: slot restore vs recompute (llama-server --slot-save-path)",
    "",
    "| method | prompt tokens | recompute ms | restore ms (server / wall) | after restore: tokens, ms | ready ms | ready / recompute | file MiB |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows) {
    const s = r.slotRestore!;
    if ("error" in s) {
      out.push(`| ${r.id} | | | | | | failed: ${s.error.replace(/\|/g, "/").slice(0, 200)} | |`);
      continue;
    }
    out.push(`| ${r.id} | ${s.prompt} | ${s.recomputeMs.toFixed(0)} | ${s.restoreMs.toFixed(0)} / ${s.restoreWallMs.toFixed(0)} | ${s.afterPromptN}, ${s.afterPromptMs.toFixed(1)} | ` +
      `${s.readyMs.toFixed(0)} | ${s.ratio.toFixed(3)} | ${(s.bytes / 2 ** 20).toFixed(0)} |`);
  }
  out.push("", "Restored from the page cache (the file was just written); a cold read adds file size / disk rate.");
  return out;
}
