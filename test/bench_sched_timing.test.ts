// Issue 22: bench/gpu/sched_timing.sh, which runs the patched llama-bench once per configuration with
// GGML_SCHED_TIMING=1 (patch 0005) and gathers the scheduler's timing lines into sched-timing.tsv.
// Here a fake llama-bench answers with llama-bench's JSON and the timing lines patch 0005 prints.
import { test } from "node:test";
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hasProgram } from "../core/native_build.ts";
import { withTempDir } from "./_tmp.ts";
import { assert, assertEquals } from "./_assert.ts";

const skip = hasProgram("python3") && hasProgram("nproc") ? false : "python3 or nproc missing";

function runTiming(dir: string, args: string[]) {
  return spawnSync("bash", ["bench/gpu/sched_timing.sh", ...args], {
    encoding: "utf8",
    env: { ...process.env, OUT: join(dir, "out"), SPILLWAY_BENCH_WORK: join(dir, "work") },
  });
}

/** Writes `script` as the patched build's llama-bench under dir/work and a model file; returns the model's path. */
function fakeBench(dir: string, script: string): string {
  const llama = join(dir, "work", "llama.cpp-hybrid", "build", "bin");
  mkdirSync(llama, { recursive: true });
  writeFileSync(join(llama, "llama-bench"), script);
  chmodSync(join(llama, "llama-bench"), 0o755);
  const model = join(dir, "m.gguf");
  writeFileSync(model, "GGUF");
  return model;
}

test("sched_timing.sh: without the patched build or the model it says so and fails", { skip }, () => withTempDir("sched-timing-", (dir) => {
  const r = runTiming(dir, [join(dir, "missing.gguf"), "36"]);
  assertEquals(r.status, 1);
  assert(r.stderr.includes("sched_timing: missing"), r.stderr);
}));

test("sched_timing.sh: one row per configuration with its thread count, tokens/s and the timing lines; THREADS=n is -t, not the environment", { skip }, () => withTempDir("sched-timing-", (dir) => {
  // The fake prints tokens/s from -t and the hybrid share it was given, and the timing lines only
  // when GGML_SCHED_TIMING is set; it fails if THREADS reaches its environment.
  const model = fakeBench(dir, `#!/bin/bash
[[ -n "$THREADS" ]] && { echo "THREADS in the environment" >&2; exit 3; }
t=0; while [[ $# -gt 0 ]]; do [[ "$1" == -t ]] && t="$2"; shift; done
echo "[{\\"avg_ts\\": $t.5}]"
[[ "$GGML_SCHED_TIMING" == 1 ]] && {
  echo "ggml_sched_timing: graphs 65, CPU splits beside device splits per graph 36.00" >&2
  echo "ggml_sched_timing: ms per graph: total 20.7, share \${LLAMA_MOE_HYBRID_GPU_FRACTION:-none}" >&2
}
exit 0
`);
  const r = runTiming(dir, [model, "36", "stock", "copy-t15=LLAMA_MOE_HYBRID_GPU_FRACTION=0.375,THREADS=15"]);
  assertEquals(r.status, 0, r.stderr);
  const rows = readFileSync(join(dir, "out", "sched-timing.tsv"), "utf8").trim().split("\n").map((l) => l.split("\t"));
  assertEquals(rows[0], ["config", "threads", "decode_tps", "timing", "flags"]);
  assertEquals(rows.length, 3);
  const n = String(availableParallelism());
  assertEquals(rows[1]!.slice(0, 3), ["stock", n, `${n}.5`]);
  assert(rows[1]![3]!.includes("total 20.7, share none"), rows[1]![3]);
  assertEquals(rows[2]!.slice(0, 3), ["copy-t15", "15", "15.5"]);
  assert(rows[2]![3]!.includes("graphs 65") && rows[2]![3]!.includes("share 0.375"), rows[2]![3]);
}));

test("sched_timing.sh: UB=n sets -ub and LAST=L keeps the experts of the last NCMOE of L layers on the CPU through -ot; both are flags, not environment, and the row records them", { skip }, () => withTempDir("sched-timing-", (dir) => {
  // The fake writes its arguments, one per line, where the test reads them, and fails if a flag key
  // reaches its environment.
  const model = fakeBench(dir, `#!/bin/bash
[[ -n "$UB$LAST" ]] && { echo "UB or LAST in the environment" >&2; exit 3; }
printf '%s\\n' "$@" > "${dir}/args-\${LLAMA_MOE_HYBRID_GPU_FRACTION:-stock}"
echo '[{"avg_ts": 40.5}]'
exit 0
`);
  const r = runTiming(dir, [model, "3", "stock=UB=512", "copy=LLAMA_MOE_HYBRID_GPU_FRACTION=0.375,LAST=5"]);
  assertEquals(r.status, 0, r.stderr);
  const stock = readFileSync(join(dir, "args-stock"), "utf8").trim().split("\n");
  assertEquals(stock.slice(stock.indexOf("-ngl")), ["-ngl", "99", "-ncmoe", "3", "-lm", "none", "-ub", "512"]);
  const copy = readFileSync(join(dir, "args-0.375"), "utf8").trim().split("\n");
  // layers 2, 3 and 4 of 5: the pattern must match those and no other layer
  assertEquals(copy.slice(copy.indexOf("-ngl")), ["-ngl", "99", "-ot", "blk\\.(2|3|4)\\.ffn_(up|down|gate|gate_up)_exps=CPU", "-lm", "none", "-ub", "2048"]);
  const pattern = new RegExp(copy[copy.indexOf("-ot") + 1]!.split("=")[0]!);
  assertEquals([0, 1, 2, 3, 4, 12].map((i) => pattern.test(`blk.${i}.ffn_up_exps.weight`)), [false, false, true, true, true, false]);
  const rows = readFileSync(join(dir, "out", "sched-timing.tsv"), "utf8").trim().split("\n").map((l) => l.split("\t"));
  assertEquals(rows[0], ["config", "threads", "decode_tps", "timing", "flags"]);
  assert(rows[1]![4]!.endsWith("-ub 512"), rows[1]![4]);
  assert(rows[2]![4]!.includes("-ot blk\\.(2|3|4)\\."), rows[2]![4]);
}));

test("sched_timing.sh: a bad config (LAST below NCMOE, a number that is not one) is refused with its name before any run", { skip }, () => withTempDir("sched-timing-", (dir) => {
  // The fake leaves a mark when it runs: a config after a good one must still stop everything.
  const model = fakeBench(dir, `#!/bin/bash\ntouch "${dir}/ran"\necho '[{"avg_ts": 1}]'\n`);
  for (const [bad, said] of [["bad=LAST=30", "bad: LAST=30 is fewer layers"], ["bad=UB=2k", "bad: UB=2k is not a positive whole number"], ["bad=THREADS=0", "bad: THREADS=0 is not"]]) {
    const r = runTiming(dir, [model, "36", "stock", bad]);
    assertEquals(r.status, 2);
    assert(r.stderr.includes(said), r.stderr);
    assert(!existsSync(join(dir, "ran")), `a run started before ${bad} was refused`);
    assert(!existsSync(join(dir, "out", "sched-timing.tsv")), "a result file was written");
  }
}));
