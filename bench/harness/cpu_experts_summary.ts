/**
 * The table of a bench/gpu/cpu_experts.sh run (issue 22): per configuration, how fast ggml's CPU
 * backend read one token's routed experts (per block, as the scheduler computes CPU splits beside a
 * GPU, and per token), how fast a plain row loop over the same rows with ggml's own vec_dot read
 * them, and how fast a plain sum read the same bytes; beside the machine's probe loops.
 *
 * `ggml-blocks / rows` below 1 is time lost in ggml's operator and its synchronization, not in the
 * dot products; `rows / sum` below 1 is the arithmetic's cost, or one row stream per thread keeping
 * too few loads in flight, which `rows4 / rows` above 1 shows (four spaced streams, same arithmetic);
 * `sum / probe` below 1 is what this access pattern (short runs per expert) costs against one long
 * stream.
 *
 * Usage: node --import tsx bench/harness/cpu_experts_summary.ts RUN_FOLDER_OR_JSONL > table.md
 *
 * @example
 * const run = readCpuExperts("bench/results/<run>/cpu_experts.jsonl");
 * console.log(cpuExpertsTable(run));
 * @module
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseHelperOutput } from "../../engine/hardware/measure/helper_output.ts";
import { summarize } from "../../engine/hardware/measure/stats.ts";

/** The ways cpu_experts.c reads the experts (rows4: its own four-stream kernel, a candidate). */
export const CPU_EXPERT_METHODS = ["ggml-blocks", "ggml-token", "rows", "rows4", "sum"] as const;
export type CpuExpertMethod = (typeof CPU_EXPERT_METHODS)[number];

/** One configuration's figures (GB/s of expert bytes, the mean over its tokens). */
export interface CpuExpertsConfig {
  config: string;
  memory: string;
  threads: number;
  /** embd x ff, experts, used per token. */
  shape: string;
  gbps: Partial<Record<CpuExpertMethod, number>>;
  /** Largest relative error of the checks (ggml's output against the scalar reference, rows4 against ggml's vec_dot), when checked. */
  maxRelError?: number;
}

/** A run: its configurations in file order and the probe loops' medians (GB/s), when measured. */
export interface CpuExpertsRun {
  configs: CpuExpertsConfig[];
  probe: { threads: number; tunedGBps?: number; simpleGBps?: number } | null;
}

function field<T>(o: Record<string, unknown>, key: string, type: "string" | "number", where: string): T {
  const v = o[key];
  if (typeof v !== type || (type === "number" && !Number.isFinite(v as number))) {
    throw new Error(`${where}: field ${key} must be a ${type}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}

/**
 * Reads cpu_experts.jsonl (or the one in a run folder).
 * @throws Error naming the file and line of a line that is not what the tool writes.
 */
export function readCpuExperts(path: string): CpuExpertsRun {
  const file = existsSync(path) && statSync(path).isDirectory() ? join(path, "cpu_experts.jsonl") : path;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`${file}: cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const configs = new Map<string, CpuExpertsConfig>();
  const probe: CpuExpertsRun["probe"] = { threads: 0 };
  let probed = false;
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${file}:${i + 1}`;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line);
    } catch {
      throw new Error(`${where}: not JSON: ${JSON.stringify(line.slice(0, 120))}`);
    }
    if (typeof o !== "object" || o === null || Array.isArray(o)) throw new Error(`${where}: not a JSON object`);
    const config = field<string>(o, "config", "string", where);
    if ("mode" in o) { // a probe loop (engine/hardware/measure/cpu_bw.c)
      let r;
      try {
        r = parseHelperOutput("cpu_bw", line);
      } catch (e) {
        throw new Error(`${where}: ${(e as Error).message}`);
      }
      const mode = field<string>(o, "mode", "string", where);
      if (mode !== "tuned" && mode !== "simple") throw new Error(`${where}: field mode must be tuned or simple, got ${JSON.stringify(mode)}`);
      probe[mode === "tuned" ? "tunedGBps" : "simpleGBps"] = summarize(r.gbps, "GB/s").median;
      probe.threads = r.threads ?? 0;
      probed = true;
      return;
    }
    if ("check" in o) {
      const c = configs.get(config);
      if (!c) throw new Error(`${where}: a check for configuration ${config}, which has no figures before it`);
      c.maxRelError = Math.max(c.maxRelError ?? 0, field<number>(o, "maxRelError", "number", where));
      return;
    }
    const method = field<string>(o, "method", "string", where);
    if (!(CPU_EXPERT_METHODS as readonly string[]).includes(method)) {
      throw new Error(`${where}: field method must be one of ${CPU_EXPERT_METHODS.join(", ")}, got ${JSON.stringify(method)}`);
    }
    const gbps = field<number>(o, "meanGBps", "number", where);
    if (!(gbps > 0)) throw new Error(`${where}: field meanGBps must be positive, got ${gbps}`);
    let c = configs.get(config);
    if (!c) {
      const n = (k: string) => field<number>(o, k, "number", where);
      c = {
        config,
        memory: field<string>(o, "memory", "string", where),
        threads: n("threads"),
        shape: `${n("embd")}x${n("ff")}, ${n("used")} of ${n("experts")}`,
        gbps: {},
      };
      configs.set(config, c);
    }
    c.gbps[method as CpuExpertMethod] = gbps;
  });
  if (configs.size === 0) throw new Error(`${file}: no configuration's figures`);
  return { configs: [...configs.values()], probe: probed ? probe : null };
}

/** Markdown: one row per configuration, GB/s and the ratios that place the loss. */
export function cpuExpertsTable(run: CpuExpertsRun): string {
  const f = (x: number | undefined, d = 1) => (x === undefined ? "-" : x.toFixed(d));
  const ratio = (a?: number, b?: number) => (a === undefined || b === undefined ? "-" : (a / b).toFixed(2));
  const tuned = run.probe?.tunedGBps;
  const lines = [
    "| configuration | memory | threads | experts | ggml per block | ggml per token | rows | rows4 | sum | ggml per block / rows | rows / sum | rows4 / rows | sum / probe (tuned) | check (max rel. error) |",
    "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const c of run.configs) {
    const g = c.gbps;
    lines.push(`| ${c.config} | ${c.memory} | ${c.threads} | ${c.shape} | ${f(g["ggml-blocks"])} | ${f(g["ggml-token"])} | ${f(g.rows)} | ${f(g.rows4)} | ${f(g.sum)} | ${ratio(g["ggml-blocks"], g.rows)} | ${ratio(g.rows, g.sum)} | ${ratio(g.rows4, g.rows)} | ${ratio(g.sum, tuned)} | ${c.maxRelError === undefined ? "-" : c.maxRelError.toExponential(1)} |`);
  }
  // Patch 0006's configurations (label "<config>-streams") against the same configuration without it.
  const streams = run.configs.filter((c) => c.config.endsWith("-streams") && run.configs.some((b) => b.config === c.config.slice(0, -"-streams".length)));
  if (streams.length) {
    lines.push("", "| configuration | GGML_CPU_MATVEC_STREAMS=4, ggml per block / stock | per token / stock |", "| --- | ---: | ---: |");
    for (const c of streams) {
      const b = run.configs.find((x) => x.config === c.config.slice(0, -"-streams".length))!;
      lines.push(`| ${b.config} | ${ratio(c.gbps["ggml-blocks"], b.gbps["ggml-blocks"])} | ${ratio(c.gbps["ggml-token"], b.gbps["ggml-token"])} |`);
    }
  }
  let out = lines.join("\n") + "\n";
  if (run.probe) {
    out += `\nProbe (engine/hardware/measure/cpu_bw.c, ${run.probe.threads} threads, 4 GiB, median of 3): tuned ${f(run.probe.tunedGBps)} GB/s, plain ${f(run.probe.simpleGBps)} GB/s.\n`;
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const path = process.argv[2];
  if (!path || process.argv.length > 3) {
    console.error("usage: cpu_experts_summary.ts RUN_FOLDER_OR_JSONL");
    process.exit(2);
  }
  try {
    process.stdout.write(cpuExpertsTable(readCpuExperts(path)));
  } catch (e) {
    console.error(`cpu_experts_summary: ${(e as Error).message}`);
    process.exit(1);
  }
}
