/**
 * llama.cpp specifics of the harness, all pure: llama-bench JSON parsing, llama-fit-params output
 * parsing, llama-perplexity KL-divergence parsing, the naive layer count that fits a VRAM budget,
 * and turning llama-bench flags into the common flags of llama-perplexity / llama-completion.
 *
 * @module
 */
import type { ModelInfo } from "../../core/types.ts";
import type { Throughput } from "./results.ts";

/** One test row of `llama-bench -o json`. */
export interface LlamaBenchRow {
  nPrompt: number;
  nGen: number;
  avgTs: number;
  stddevTs: number;
  samplesTs: number[];
  avgNs: number;
}

/** Parses llama-bench's JSON output (an array of test objects); throws naming what is missing. */
export function parseLlamaBenchJson(text: string): LlamaBenchRow[] {
  const start = text.indexOf("[");
  const end = text.lastIndexOf("]");
  if (start < 0 || end < start) throw new Error("llama-bench printed no JSON array");
  const arr = JSON.parse(text.slice(start, end + 1)) as Record<string, unknown>[];
  return arr.map((o, i) => {
    const n = (k: string): number => {
      const v = o[k];
      if (typeof v !== "number") throw new Error(`llama-bench JSON row ${i}: field ${k} missing`);
      return v;
    };
    return {
      nPrompt: n("n_prompt"),
      nGen: n("n_gen"),
      avgTs: n("avg_ts"),
      stddevTs: n("stddev_ts"),
      samplesTs: Array.isArray(o.samples_ts) ? (o.samples_ts as number[]) : [],
      avgNs: typeof o.avg_ns === "number" ? o.avg_ns : 0,
    };
  });
}

/** Splits llama-bench rows into prefill (pp), decode (tg) and combined (pg) figures. */
export function benchFigures(rows: LlamaBenchRow[]): {
  prefill: Throughput | null;
  decode: Throughput | null;
  endToEnd: (Throughput & { prompt: number; gen: number; seconds: number }) | null;
} {
  const t = (r: LlamaBenchRow, tokens: number): Throughput => ({ tokens, tps: r.avgTs, stddev: r.stddevTs, samples: r.samplesTs });
  const pp = rows.find((r) => r.nPrompt > 0 && r.nGen === 0);
  const tg = rows.find((r) => r.nPrompt === 0 && r.nGen > 0);
  const pg = rows.find((r) => r.nPrompt > 0 && r.nGen > 0);
  return {
    prefill: pp ? t(pp, pp.nPrompt) : null,
    decode: tg ? t(tg, tg.nGen) : null,
    endToEnd: pg
      ? { ...t(pg, pg.nPrompt + pg.nGen), prompt: pg.nPrompt, gen: pg.nGen, seconds: pg.avgNs > 0 ? pg.avgNs / 1e9 : (pg.nPrompt + pg.nGen) / pg.avgTs }
      : null,
  };
}

/** Splits a command line the way a POSIX shell would for plain words, '…' and "…" (no expansion). */
export function splitShellWords(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (ch === "'") {
      const j = line.indexOf("'", i + 1);
      if (j < 0) throw new Error(`unterminated ' in: ${line}`);
      cur += line.slice(i + 1, j);
      i = j;
      has = true;
    } else if (ch === '"') {
      let j = i + 1;
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === "\\" && (line[j + 1] === '"' || line[j + 1] === "\\")) j++;
        cur += line[j];
      }
      if (j >= line.length) throw new Error(`unterminated " in: ${line}`);
      i = j;
      has = true;
    } else if (/\s/.test(ch)) {
      if (has) out.push(cur);
      cur = "";
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

/**
 * The flags llama-fit-params printed (its last stdout line that starts with '-'), as common-flag
 * argv, e.g. ["-c", "4096", "-ngl", "49", "-ot", "blk\\.14\\.ffn_...=CPU,..."].
 */
export function parseFitParams(stdout: string): string[] {
  const lines = stdout.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("-"));
  if (lines.length === 0) throw new Error("llama-fit-params printed no flags");
  return splitShellWords(lines[lines.length - 1]);
}

/**
 * Common flags (llama-server/-cli/-perplexity/-fit-params) -> llama-bench flags. llama-bench
 * takes no -c (the context is the test size), separates the overrides of one configuration with
 * ';' (',' separates configurations), and wants -nkvo 0|1.
 */
export function commonToBenchFlags(flags: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i];
    if (f === "-c" || f === "--ctx-size" || f === "-fit" || f === "--fit") {
      i++;
    } else if (f === "-ot" || f === "--override-tensor") {
      out.push("-ot", flags[++i].split(",").join(";"));
    } else if (f === "-nkvo" || f === "--no-kv-offload") {
      out.push("-nkvo", "1");
    } else out.push(f);
  }
  return out;
}

/**
 * llama-bench flags -> common flags for llama-perplexity. The load mode (`-lm`) stays as run: it
 * decides what is computed (mmap'd CPU weights are repacked for other kernels than pinned ones, and
 * the patched build's hybrid experts exist only in pinned memory), so a check under another mode
 * would check another configuration.
 */
export function benchToCommonFlags(flags: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i];
    if (f === "-ot" || f === "--override-tensors" || f === "--override-tensor") out.push("-ot", flags[++i].split(";").join(","));
    else if (f === "-nkvo" || f === "--no-kv-offload") {
      if (flags[++i] === "1") out.push("-nkvo");
    } else if (f === "-r" || f === "-o" || f === "-p" || f === "-n" || f === "-pg") i++;
    else out.push(f);
  }
  return out;
}

/** Bytes of each transformer layer's tensors, indexed by layer. */
export function layerBytes(model: ModelInfo): number[] {
  const per = new Array<number>(model.layerCount).fill(0);
  for (const t of model.tensors) if (t.layer !== null && t.layer < per.length) per[t.layer] += t.bytes;
  return per;
}

/**
 * The largest -ngl N (whole layers on the GPU, the last N as llama.cpp offloads them) whose
 * weights and KV cache fit `freeBytes` minus `reserveBytes` (compute buffers, CUDA context).
 */
export function naiveGpuLayers(model: ModelInfo, freeBytes: number, reserveBytes: number, contextTokens: number): number {
  const per = layerBytes(model);
  const kvPerLayer = (model.kvBytesPerToken / Math.max(1, model.layerCount)) * contextTokens;
  let budget = freeBytes - reserveBytes;
  let n = 0;
  for (let i = per.length - 1; i >= 0; i--) {
    const need = per[i] + kvPerLayer;
    if (need > budget) break;
    budget -= need;
    n++;
  }
  return n;
}

/** KL-divergence statistics printed by `llama-perplexity --kl-divergence`. */
export interface KldStats {
  meanKld: number | null;
  sameTopPct: number | null;
  ppl: number | null;
  refPpl: number | null;
}

/** Parses llama-perplexity output (PPL of a base run, or the KL-divergence statistics). */
export function parsePerplexity(text: string): KldStats {
  const f = (re: RegExp): number | null => {
    const m = re.exec(text);
    return m ? Number(m[1]) : null;
  };
  return {
    meanKld: f(/Mean\s+KLD:\s+([-\d.eE+]+)/),
    sameTopPct: f(/Same top p:\s+([\d.]+)/),
    ppl: f(/Mean PPL\(Q\)\s*:\s*([\d.eE+]+)/) ?? f(/Final estimate: PPL = ([\d.eE+]+)/),
    refPpl: f(/Mean PPL\(base\)\s*:\s*([\d.eE+]+)/),
  };
}

/** What {@link runUntilStats} needs of one llama-perplexity run. */
export interface PerplexityRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs llama-perplexity (`run`) again, up to `attempts` times in all, while it exits 0 without the
 * KL-divergence statistics. Its log is asynchronous and never flushed at exit (common/log.h asks
 * callers to flush; the tool does not), so a successful run can lose its last lines, which hold
 * the statistics: on a 2-core machine about one run in five. `timeLeft` says whether another run
 * still fits the caller's budget. Returns the last run and how many ran.
 *
 * @example
 * ```ts
 * const { run, attempts } = await runUntilStats(() => runStep(argv, opts));
 * const stats = parsePerplexity(run.stdout + run.stderr);
 * ```
 */
export async function runUntilStats<R extends PerplexityRun>(run: () => Promise<R>, attempts = 4, timeLeft: () => boolean = () => true): Promise<{ run: R; attempts: number }> {
  let last = await run();
  let n = 1;
  while (n < attempts && last.code === 0 && !hasKldStats(last) && timeLeft()) {
    last = await run();
    n++;
  }
  return { run: last, attempts: n };
}

/** The run printed both KL-divergence figures the check reads. */
function hasKldStats(r: PerplexityRun): boolean {
  const s = parsePerplexity(r.stdout + r.stderr);
  return s.meanKld !== null && s.sameTopPct !== null;
}

/** A fixed English text for the logits check; byte-level tokens, so ~1 token per character. */
export function checkText(minChars: number): string {
  const base =
    "The river rose through the night, and by morning the old spillway carried more water than " +
    "anyone in the valley had seen. Engineers measured the flow every hour, wrote the numbers in a " +
    "ledger, and compared them with the records of earlier floods. ";
  let s = "";
  while (s.length < minChars) s += base;
  return s;
}
