/**
 * How often llama-perplexity loses its KL-divergence statistics at exit (its log's last lines; patch
 * 0009 flushes the log), counted on the CPU: tiny-moe (F16) against its stock logits, at a hybrid GPU
 * share (`LLAMA_MOE_HYBRID_ANY_HOST=1`, both parts on the CPU), with busy loops beside it as the
 * load of a shared CI machine.
 *
 * Usage: node --import tsx bench/harness/kl_log_loss.ts BIN_DIR [--runs 25] [--share 0.25] [--load 2]
 * BIN_DIR: the patched CPU build's binaries (`bash runtimes/llama.cpp/build.sh --cpu-only --print-dir`).
 * Prints one line: runs with and without the statistics.
 *
 * @example
 * node --import tsx bench/harness/kl_log_loss.ts "$(bash runtimes/llama.cpp/build.sh --cpu-only --rpc --print-dir)"
 * // 25 runs at share 0.25 beside 2 busy loops: 25 with the KL statistics, 0 without
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { synthesize } from "../../engine/model/synth.ts";
import { checkText, parsePerplexity } from "./llama.ts";
import { runStep } from "./proc.ts";

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { runs: { type: "string", default: "25" }, share: { type: "string", default: "0.25" }, load: { type: "string", default: "2" } },
});
const bin = join(positionals[0] ?? "", "llama-perplexity");
if (!existsSync(bin)) {
  console.error(`kl_log_loss: ${bin} not found; pass the patched CPU build's binaries folder (see the file's usage)`);
  process.exit(2);
}
const runs = Number(values.runs);
const load = Number(values.load);
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(load) || load < 0) {
  console.error("kl_log_loss: --runs must be a positive integer and --load a non-negative integer");
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), "spillway-kl-loss-"));
const busy: ChildProcess[] = [];
try {
  const text = join(dir, "text.txt");
  writeFileSync(text, checkText(6000));
  const model = join(dir, "tiny-moe.gguf");
  await synthesize({ shape: "tiny-moe", quant: "F16", out: model });
  const base = join(dir, "base.kld");
  const args = ["-m", model, "-f", text, "-c", "128", "--chunks", "2", "-t", "2", "-ub", "1", "--kl-divergence-base", base];
  const ref = await runStep([bin, ...args], { env: {}, timeoutS: 120 });
  if (ref.code !== 0) throw new Error(`the stock reference run exited ${ref.code}: ${ref.stderr.slice(-500)}`);
  for (let i = 0; i < load; i++) busy.push(spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }));
  let withStats = 0;
  for (let i = 0; i < runs; i++) {
    const r = await runStep([bin, ...args, "--kl-divergence"], { env: { LLAMA_MOE_HYBRID_ANY_HOST: "1", LLAMA_MOE_HYBRID_GPU_FRACTION: values.share! }, timeoutS: 120 });
    if (r.code !== 0) throw new Error(`run ${i + 1} exited ${r.code}: ${r.stderr.slice(-500)}`);
    const s = parsePerplexity(r.stdout + r.stderr);
    if (s.meanKld !== null && s.sameTopPct !== null) withStats++;
  }
  console.log(`${runs} runs at share ${values.share} beside ${load} busy loops: ${withStats} with the KL statistics, ${runs - withStats} without`);
} finally {
  for (const b of busy) b.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
