/**
 * The CPU rate a run's stock llama.cpp rows imply (issue 22, docs/planner.md "Known limit: the CPU
 * rate"): for each stock row that keeps the experts of its first N blocks on the CPU in pinned
 * buffers (`-ncmoe N -lm none`, no `-ot`, none of the patched build's switches), the `ramGBps` at
 * which the planner's cost model predicts the decode rate the row measured, beside what the
 * machine's probe read (tiers.json's tuned and plain loops, or concurrent.json's CPU alone and the
 * plain loop from cpu_ram.json or cpu_bw.txt).
 *
 * Where the implied rate equals the probe's, the model's CPU part holds on that machine; where it
 * is lower, llama.cpp's CPU experts read slower than the probe's summing threads.
 *
 * The profile is the run's own (tiers.json) when it has one, else the given base profile with the
 * run's GPU (spec-sheet VRAM rate, its name) and the probe's CPU rate; only the CPU rate is solved
 * for, so the other figures matter through the GPU part's share of the token only.
 *
 * Usage: node --import tsx bench/harness/implied_cpu_rate.ts RUN_FOLDER... > table.md
 * (the base profile: bench/results/2026-11-22-h200-planned/tiers.json)
 *
 * @example
 * const rows = impliedCpuRates("bench/results/2026-12-07-hybrid-launch", base);
 * rows[0].impliedGBps; // ~123, with the probe at 123.1
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { HardwareProfile } from "../../core/types.ts";
import { gpuSpecFor } from "../../engine/hardware/gpu_specs.ts";
import { readConcurrentJson } from "../../engine/hardware/measure/concurrent.ts";
import { parseHelperOutput } from "../../engine/hardware/measure/helper_output.ts";
import type { BenchReport } from "../../engine/hardware/measure/run.ts";
import { summarize } from "../../engine/hardware/measure/stats.ts";
import { evaluate } from "../../engine/planner/candidates.ts";
import { modelInfoFromShape } from "../../engine/planner/from_shape.ts";
import { planContext, type PlanRecipe } from "../../engine/planner/plan.ts";
import { isStock } from "./hybrid_summary.ts";
import { readResults } from "./results.ts";

/** The base profile for runs without their own tiers.json. */
export const BASE_PROFILE_FILE = fileURLToPath(new URL("../results/2026-11-22-h200-planned/tiers.json", import.meta.url));

/** Routing of the synthetic models the runs use (as test/planner_calibration.test.ts). */
const SYNTHETIC_REACH = 0.45;
const GiB = 2 ** 30;

/** One stock row and the CPU rate its decode implies. */
export interface ImpliedCpuRate {
  run: string;
  id: string;
  /** The synthesized model's shape (engine/model/shapes.ts). */
  shape: string;
  gpu: string;
  cpuMoeLayers: number;
  ubatch: number;
  decodeTps: number;
  /** `ramGBps` at which the cost model predicts `decodeTps`. */
  impliedGBps: number;
  /** The probe's tuned loop (tiers.json) or its CPU alone (concurrent.json), GB/s; null when unprobed. */
  probeGBps: number | null;
  /** The probe's plain loop (tiers.json, or cpu_ram.json / cpu_bw.txt beside concurrent.json), GB/s, when measured. */
  probeSimpleGBps: number | null;
  /** Where `probeGBps` came from. */
  probe: "tiers" | "concurrent" | null;
}

function flag(command: string[], name: string): string | undefined {
  const i = command.lastIndexOf(name);
  return i >= 0 ? command[i + 1] : undefined;
}

/** The run's CPU probe figures and, from tiers.json, its measured profile. */
function probeOf(dir: string): { profile?: HardwareProfile; tuned: number | null; simple: number | null; from: ImpliedCpuRate["probe"] } {
  const tiers = join(dir, "tiers.json");
  if (existsSync(tiers)) {
    let t: BenchReport;
    try {
      t = JSON.parse(readFileSync(tiers, "utf8"));
    } catch (e) {
      throw new Error(`${tiers}: not JSON (${(e as Error).message})`);
    }
    if (!t.profile?.host) throw new Error(`${tiers}: no profile.host (not spillway bench's report)`);
    const m = t.profile.measured ?? {};
    const tuned = m.cpuRamGBps?.median ?? t.profile.host.ramGBps;
    return { profile: t.profile, tuned, simple: m.cpuRamSimpleGBps?.median ?? null, from: "tiers" };
  }
  const simple = plainLoopGBps(dir);
  const conc = join(dir, "concurrent.json");
  if (existsSync(conc)) {
    let rates;
    try {
      rates = readConcurrentJson(readFileSync(conc, "utf8"));
    } catch (e) {
      throw new Error(`${conc}: ${(e as Error).message}`);
    }
    return { tuned: rates.cpuAloneGBps.median, simple, from: "concurrent" };
  }
  return { tuned: null, simple, from: null };
}

/**
 * The plain loop's median from a run folder's cpu_ram.json (the harness's `concurrent` command) or
 * cpu_bw.txt (the cpu_bw helper's JSON lines, saved by hand), or null when there is none.
 * @throws Error naming the file (and line) when it is not what those write.
 */
function plainLoopGBps(dir: string): number | null {
  const ram = join(dir, "cpu_ram.json");
  if (existsSync(ram)) {
    let o: { simpleGBps?: { median?: unknown } };
    try {
      o = JSON.parse(readFileSync(ram, "utf8"));
    } catch (e) {
      throw new Error(`${ram}: not JSON (${(e as Error).message})`);
    }
    const v = o.simpleGBps?.median;
    if (v === undefined) return null;
    if (typeof v !== "number" || !(v > 0)) throw new Error(`${ram}: simpleGBps.median must be a positive rate, got ${JSON.stringify(v)}`);
    return v;
  }
  const file = join(dir, "cpu_bw.txt");
  if (!existsSync(file)) return null;
  const rates: number[] = [];
  for (const [i, line] of readFileSync(file, "utf8").split("\n").entries()) {
    if (!line.trim()) continue;
    try {
      const { gbps } = parseHelperOutput("cpu_bw", line);
      if ((JSON.parse(line) as { mode?: unknown }).mode === "simple") rates.push(...gbps);
    } catch (e) {
      throw new Error(`${file}:${i + 1}: ${(e as Error).message}`);
    }
  }
  return rates.length ? summarize(rates, "GB/s").median : null;
}

/**
 * The implied CPU rate of every stock `-ncmoe N -lm none` row of a run folder (results.json).
 * Rows at another thread count than the machine's cores, with `-ot`, or of a shape without a
 * known layout are left out.
 * @throws Error naming the folder's file when results.json or a probe file cannot be read.
 */
export function impliedCpuRates(dir: string, base: HardwareProfile): ImpliedCpuRate[] {
  const { results } = readResults(dir);
  const probe = probeOf(dir);
  const gpuName = results.machine?.gpus?.[0]?.name ?? base.gpu?.name ?? "unknown";
  const out: ImpliedCpuRate[] = [];
  for (const row of results.results) {
    const command = row.command ?? [];
    const cpuMoe = flag(command, "-ncmoe");
    if (!row.decode?.tps || cpuMoe === undefined || flag(command, "-lm") !== "none" || command.includes("-ot")) continue;
    if (!isStock(row)) continue;
    const threads = Number(flag(command, "-t") ?? results.machine?.cpuCores);
    if (threads !== (results.machine?.cpuCores ?? base.host.cpuCores)) continue;
    // synthesized models are named <shape>-<QUANT>.gguf
    const m = /^(.+)-([A-Z0-9_]+)\.gguf$/.exec(basename(flag(command, "-m") ?? ""));
    if (!m) continue;
    let model;
    try {
      model = modelInfoFromShape(m[1]!, m[2]!);
    } catch {
      continue;
    }
    const hw: HardwareProfile = structuredClone(probe.profile ?? base);
    if (!probe.profile && hw.gpu) {
      hw.gpu.name = gpuName;
      hw.gpu.vramGBps = gpuSpecFor(gpuName)?.vramGBps ?? hw.gpu.vramGBps;
    }
    // fixed flags: the placement is the row's, whatever the ballast left free
    if (hw.gpu) hw.gpu.freeVramBytes = hw.gpu.vramBytes;
    hw.host.availableRamBytes = Math.max(hw.host.availableRamBytes, 2 * model.tensorBytes);
    const prompt = row.prefill?.tokens ?? 512;
    const gen = row.decode.tokens;
    const ubatch = Number(flag(command, "-ub") ?? 512);
    const recipe: PlanRecipe = {
      runtime: { name: "llama.cpp" },
      context: prompt + gen,
      batch: 2048,
      threads,
      workload: { objective: "custom", promptTokens: prompt, generatedTokens: gen },
      placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
    };
    const predict = (ramGBps: number): number => {
      hw.host.ramGBps = ramGBps;
      const ctx = planContext(model, hw, recipe, { routing: { reach: SYNTHETIC_REACH } });
      return evaluate(ctx, { kind: "experts_cpu", cpuMoeLayers: Number(cpuMoe), loadMode: "none", ubatch }).prediction.decodeTps;
    };
    // decode grows with the CPU rate: bisect between rates no machine has
    let lo = 1, hi = 2000;
    if (predict(hi) < row.decode.tps) continue; // faster than the model allows at any CPU rate
    for (let i = 0; i < 50; i++) {
      const mid = (lo + hi) / 2;
      if (predict(mid) < row.decode.tps) lo = mid;
      else hi = mid;
    }
    out.push({
      run: basename(dir),
      id: row.id,
      shape: m[1]!,
      gpu: gpuName,
      cpuMoeLayers: Number(cpuMoe),
      ubatch,
      decodeTps: row.decode.tps,
      impliedGBps: (lo + hi) / 2,
      probeGBps: probe.tuned,
      probeSimpleGBps: probe.simple,
      probe: probe.from,
    });
  }
  return out;
}

/** Markdown table of {@link impliedCpuRates} rows, with implied / probe. */
export function impliedCpuRateTable(rows: ImpliedCpuRate[]): string {
  const f = (x: number | null, d = 1) => (x === null ? "-" : x.toFixed(d));
  const lines = [
    "| run | row | shape | GPU | -ncmoe | -ub | decode t/s | implied CPU GB/s | probe GB/s (from) | plain loop GB/s | implied / probe |",
    "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows) {
    lines.push(`| ${r.run} | ${r.id} | ${r.shape} | ${r.gpu.replace(/^NVIDIA /, "")} | ${r.cpuMoeLayers} | ${r.ubatch} | ${f(r.decodeTps, 2)} | ${f(r.impliedGBps)} | ${f(r.probeGBps)}${r.probe ? ` (${r.probe})` : ""} | ${f(r.probeSimpleGBps)} | ${r.probeGBps ? f(r.impliedGBps / r.probeGBps, 2) : "-"} |`);
  }
  return lines.join("\n") + "\n";
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dirs = process.argv.slice(2);
  if (dirs.length === 0) {
    console.error("usage: implied_cpu_rate.ts RUN_FOLDER...");
    process.exit(2);
  }
  const base = JSON.parse(readFileSync(BASE_PROFILE_FILE, "utf8")).profile as HardwareProfile;
  try {
    process.stdout.write(impliedCpuRateTable(dirs.flatMap((d) => impliedCpuRates(d, base))));
  } catch (e) {
    console.error(`implied_cpu_rate: ${(e as Error).message}`);
    process.exit(1);
  }
}
