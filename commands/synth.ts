/**
 * `spillway synth <shape> -q Q8_0 -o file.gguf [--sparse] [--seed N]`: writes a synthetic GGUF
 * with a progress bar; `listShapes()` for `spillway synth --list`.
 *
 * @module
 */

import { withInterrupt } from "../core/interrupt.ts";
import { progressBar } from "../core/progress.ts";
import { InterruptedError, SpillwayError } from "../core/errors.ts";
import { getShape, listShapes as allShapes, type ModelShape } from "../engine/model/shapes.ts";
import { synthesize, SYNTH_LIMITS, type SynthQuant } from "../engine/model/synth.ts";

/** Options of synthCommand (parsed CLI arguments). */
export interface SynthCommandOptions {
  shape: string;
  quant: string;
  out: string;
  sparse?: boolean;
  seed?: number;
  /** Vocabulary size override (smaller files for tests). */
  vocabSize?: number;
}

/** The named shapes, for `--list` and help text. */
export function listShapes(): ModelShape[] {
  return allShapes();
}

const QUANTS = ["Q8_0", "Q4_0", "F16"];

function human(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes, u = 0;
  while (v >= 1024 && u < units.length - 1) (v /= 1024), u++;
  return `${u === 0 ? v : v.toFixed(2)} ${units[u]}`;
}

/** Runs `spillway synth`; returns the process exit code (0 ok, 2 bad arguments, 1 write failure). */
export async function synthCommand(opts: SynthCommandOptions): Promise<number> {
  const shape = getShape(opts.shape);
  if (!shape) {
    console.error(`spillway synth: unknown shape '${opts.shape}'. Known shapes:`);
    for (const s of allShapes()) console.error(`  ${s.id.padEnd(18)} ${s.description}`);
    return 2;
  }
  const quant = String(opts.quant ?? "Q8_0").toUpperCase();
  if (!QUANTS.includes(quant)) {
    console.error(`spillway synth: quantization '${opts.quant}' is not supported; use one of ${QUANTS.join(", ")}`);
    return 2;
  }
  if (!opts.out) {
    console.error("spillway synth: missing output path (-o file.gguf)");
    return 2;
  }
  // Bounded before anything is written: an absurd vocabulary used to run a minute, then exhaust memory.
  const v = opts.vocabSize;
  if (v !== undefined && !(Number.isInteger(v) && v >= SYNTH_LIMITS.vocabMin && v <= SYNTH_LIMITS.vocabMax)) {
    console.error(`spillway synth: --vocab ${v} is outside ${SYNTH_LIMITS.vocabMin}..${SYNTH_LIMITS.vocabMax} (256 byte tokens + BOS + EOS at least; the largest real vocabularies have ~262k tokens)`);
    return 2;
  }
  const seed = opts.seed;
  if (seed !== undefined && !(Number.isInteger(seed) && seed >= 0 && seed <= SYNTH_LIMITS.seedMax)) {
    console.error(`spillway synth: --seed ${seed} is outside 0..${SYNTH_LIMITS.seedMax} (a 32-bit seed)`);
    return 2;
  }
  const bar = progressBar("synth", "bytes");
  const t0 = performance.now();
  try {
    const r = await withInterrupt(`synth ${opts.out}`, (signal) => synthesize({
      signal,
      shape,
      quant: quant as SynthQuant,
      out: opts.out,
      sparse: opts.sparse,
      seed: opts.seed,
      vocabSize: opts.vocabSize,
      onProgress: (done, total) => bar.update(done, total),
    }));
    bar.stop();
    const secs = (performance.now() - t0) / 1000;
    console.log(
      `wrote ${r.path}: ${human(r.bytes)} (${r.bytes} bytes)${opts.sparse ? ", sparse (data is a hole)" : ""} in ${secs.toFixed(1)} s`,
    );
    return 0;
  } catch (e) {
    bar.stop();
    console.error(`spillway synth: ${e instanceof SpillwayError ? e.message : (e as Error).message}`);
    return e instanceof InterruptedError ? 130 : 1;
  }
}
