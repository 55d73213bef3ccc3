/**
 * The harness's CPU-only mode, for CI: a tiny synthetic model (engine/model synthesize), timed in
 * process by node-llama-cpp's CPU build (prefill, greedy decode) under a few configurations, each
 * checked against the first one (same CPU kernels: identical greedy tokens expected), written as
 * the same results.json / results.md / chart.svg / chart.png as a GPU run.
 *
 * @module
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { synthesize } from "../../engine/model/synth.ts";
import { machineDetails } from "./machine.ts";
import { type CheckResult, meanStd, type MethodResult, type RunResults, writeResults } from "./results.ts";
import { writeReport } from "./report.ts";

/** One CPU-mode configuration. */
export interface CpuMethod {
  id: string;
  label: string;
  batchSize: number;
  useMmap: boolean;
}

/** The configurations the CPU mode compares. */
export const CPU_METHODS: CpuMethod[] = [
  { id: "reference", label: "node-llama-cpp CPU, batch 256, mmap", batchSize: 256, useMmap: true },
  { id: "small-batch", label: "node-llama-cpp CPU, batch 32, mmap", batchSize: 32, useMmap: true },
  { id: "no-mmap", label: "node-llama-cpp CPU, batch 256, no mmap", batchSize: 256, useMmap: false },
];

/** Options of {@link runCpuMode}. */
export interface CpuModeOptions {
  out: string;
  shape?: string;
  prompt?: number;
  gen?: number;
  repetitions?: number;
  threads?: number;
}

/** Runs the CPU mode; writes results.json, results.md, chart.svg, chart.png into `out`. */
export async function runCpuMode(o: CpuModeOptions): Promise<RunResults> {
  const shape = o.shape ?? "tiny-moe";
  const prompt = o.prompt ?? 64;
  const gen = o.gen ?? 16;
  const reps = o.repetitions ?? 2;
  const threads = o.threads ?? Math.max(1, Math.min(2, cpus().length));
  mkdirSync(o.out, { recursive: true });
  const tmp = mkdtempSync(join(tmpdir(), "spillway-bench-cpu-"));
  const results: RunResults = {
    version: 1, kind: "cpu", matrix: `cpu-${shape}`, startedAt: new Date().toISOString(), finishedAt: null,
    machine: machineDetails(), software: { node: process.version }, phases: {}, results: [], notes: [],
  };
  try {
    const t0 = performance.now();
    const modelPath = join(tmp, `${shape}-Q8_0.gguf`);
    await synthesize({ shape, quant: "Q8_0", out: modelPath });
    results.phases.synth = (performance.now() - t0) / 1000;
    const { getLlama } = await import("node-llama-cpp");
    const llama = await getLlama({ gpu: false, maxThreads: threads, logLevel: "error" as never, build: "never" as never, usePrebuiltBinaries: true });
    results.software.llamaCpp = String((llama as unknown as { llamaCppRelease?: { release?: string } }).llamaCppRelease?.release ?? "node-llama-cpp prebuilt");
    let refTokens: number[] | null = null;
    for (const m of CPU_METHODS) {
      const tm = performance.now();
      const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: m.useMmap });
      try {
        const vocab = 256; // byte tokens: valid in every synthetic vocabulary
        const ids = Array.from({ length: prompt }, (_, i) => ((i * 7919 + 13) % vocab));
        const pp: number[] = [];
        const tg: number[] = [];
        let tokens: number[] = [];
        for (let r = 0; r < reps; r++) {
          const ctx = await model.createContext({ contextSize: 256, batchSize: m.batchSize, threads, sequences: 1 });
          try {
            const seq = ctx.getSequence();
            const a = performance.now();
            await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, -1) as never);
            pp.push((prompt - 1) / ((performance.now() - a) / 1000));
            const out: number[] = [];
            const b = performance.now();
            for await (const tok of seq.evaluate([ids[ids.length - 1]] as never, { temperature: 0 })) {
              out.push(Number(tok));
              if (out.length >= gen) break;
            }
            tg.push(out.length / ((performance.now() - b) / 1000));
            tokens = out;
          } finally {
            await ctx.dispose();
          }
        }
        let check: CheckResult;
        if (refTokens === null) {
          refTokens = tokens;
          check = { mode: "none", pass: null, how: "greedy tokens (the reference)", detail: "reference" };
        } else {
          const same = tokens.length === refTokens.length && tokens.every((t, i) => t === refTokens![i]);
          check = { mode: "exact", pass: same, how: `greedy ${gen} tokens vs ${CPU_METHODS[0].id} (same CPU kernels)`, detail: same ? "identical" : `got ${tokens.join(",")} want ${refTokens.join(",")}` };
        }
        const p = meanStd(pp), d = meanStd(tg);
        const res: MethodResult = {
          id: m.id, label: m.label, runtime: "node-llama-cpp", model: shape, freeVramGiB: null, ballastFreeBytes: null,
          workload: `p${prompt}-n${gen}`, command: ["node-llama-cpp", `loadModel(gpuLayers=0, useMmap=${m.useMmap})`, `createContext(batchSize=${m.batchSize}, threads=${threads})`], env: {},
          prefill: { tokens: prompt - 1, tps: p.mean, stddev: p.stddev, samples: pp },
          decode: { tokens: gen, tps: d.mean, stddev: d.stddev, samples: tg },
          endToEnd: null, check, seconds: (performance.now() - tm) / 1000, status: "ok",
        };
        results.results.push(res);
      } finally {
        await model.dispose();
      }
    }
    await llama.dispose();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  results.finishedAt = new Date().toISOString();
  const file = join(o.out, "results.json");
  writeResults(file, results);
  await writeReport(file);
  return results;
}

/** `harness cpu [--out D] [--shape S] [--prompt N] [--gen N]`. */
export async function cpuCommand(o: Record<string, string>): Promise<number> {
  const r = await runCpuMode({
    out: resolve(o.out ?? "bench/.out/cpu"),
    shape: o.shape,
    prompt: o.prompt ? Number(o.prompt) : undefined,
    gen: o.gen ? Number(o.gen) : undefined,
    repetitions: o.reps ? Number(o.reps) : undefined,
  });
  for (const x of r.results) console.log(`${x.id}: prefill ${x.prefill?.tps.toFixed(1)} t/s, decode ${x.decode?.tps.toFixed(1)} t/s, check ${x.check.pass}`);
  return r.results.every((x) => x.status === "ok" && x.check.pass !== false) ? 0 : 1;
}
