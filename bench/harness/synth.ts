/**
 * Synthesizes the matrix's models (engine/model synthesize) where they are missing, into RAM
 * (/dev/shm) when it has room, else under the work folder. A finished file is kept between calls
 * on a warm machine and reused when its size matches the layout.
 *
 * @module
 */
import { existsSync, mkdirSync, statSync, statfsSync } from "node:fs";
import { join, resolve } from "node:path";
import { synthesize } from "../../engine/model/synth.ts";
import { loadBenchMatrix, type MatrixModel } from "./matrix.ts";

/** Bytes free on the filesystem holding `dir` (0 when unknown). */
export function freeBytes(dir: string): number {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return 0;
  }
}

/** The folder models go to: `SPILLWAY_BENCH_MODELS`, else /dev/shm when it has `need` + 8 GiB free, else `work`/models. */
export function modelsDir(work: string, need: number): string {
  const env = process.env.SPILLWAY_BENCH_MODELS;
  if (env) return env;
  if (existsSync("/dev/shm") && freeBytes("/dev/shm") > need + 8 * 2 ** 30) return "/dev/shm/spillway-models";
  return join(work, "models");
}

/** File name of a synthetic model. */
export function modelFile(m: MatrixModel): string {
  return `${m.shape}-${m.quant}.gguf`;
}

/** Makes sure `m` exists under `dir`; returns its path and the seconds spent writing (0 when reused). */
export async function ensureModel(m: MatrixModel, dir: string, log: (s: string) => void = () => {}): Promise<{ path: string; seconds: number; bytes: number }> {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, modelFile(m));
  if (existsSync(path)) {
    // A complete file was renamed into place by synthesize; a partial one never has the final name.
    return { path, seconds: 0, bytes: statSync(path).size };
  }
  const t0 = performance.now();
  let lastPct = -10;
  const r = await synthesize({
    shape: m.shape,
    quant: m.quant,
    out: path,
    onProgress: (done, total) => {
      const pct = Math.floor((done / total) * 100);
      if (pct >= lastPct + 10) {
        lastPct = pct;
        log(`synth ${m.id}: ${pct}% of ${(total / 2 ** 30).toFixed(2)} GiB`);
      }
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  log(`synth ${m.id}: ${(r.bytes / 2 ** 30).toFixed(2)} GiB in ${seconds.toFixed(1)} s (${(r.bytes / 1e9 / seconds).toFixed(2)} GB/s) -> ${path}`);
  return { path, seconds, bytes: r.bytes };
}

/** `harness synth --matrix F [--work D]`: synthesizes every model of the matrix. */
export async function synthCommand(o: Record<string, string>): Promise<number> {
  const matrix = loadBenchMatrix(resolve(o.matrix ?? "bench/matrices/moe30b-12g.json5"));
  const work = resolve(o.work ?? "/tmp/spillway-bench");
  const dir = modelsDir(work, 40 * 2 ** 30);
  for (const m of matrix.models) await ensureModel(m, dir, (s) => console.log(s));
  return 0;
}
