// Issue 22: bench/gpu/trace_summary.py, which turns an Nsight Systems SQLite export of a hybrid decode
// run into where its GPU time went (bench/gpu/hybrid_trace.sh runs both on the GPU machine). Here the
// export is a small SQLite file with the tables and columns nsys writes, built by python3's sqlite3.
import { test } from "node:test";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hasProgram } from "../core/native_build.ts";
import { withTempDir } from "./_tmp.ts";
import { assert, assertEquals } from "./_assert.ts";

const SCRIPT = "bench/gpu/trace_summary.py";
const skip = hasProgram("python3") ? false : "python3 missing";

/**
 * A trace: a 100 MB load copy, then `tokens` rows of (1.6 MB copy, 10 us kernel, 15 us kernel
 * overlapping it) and on the host (a 5 us cudaLaunchKernel, a 20 us cudaStreamSynchronize).
 */
function makeTrace(path: string, tokens: number, withKernels = true): void {
  const py = `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("create table StringIds(id integer, value text)")
db.execute("create table CUPTI_ACTIVITY_KIND_MEMCPY(start int, end int, bytes int, copyKind int)")
db.executemany("insert into StringIds values(?, ?)", [(1, "mul_mat_vec_q"), (2, "rms_norm"), (3, "cudaLaunchKernel_v7000"), (4, "cudaStreamSynchronize_v3020")])
db.execute("create table CUPTI_ACTIVITY_KIND_RUNTIME(start int, end int, nameId int)")
db.execute("insert into CUPTI_ACTIVITY_KIND_MEMCPY values(0, 1000000, 100000000, 1)")
if ${withKernels ? "True" : "False"}:
    db.execute("create table CUPTI_ACTIVITY_KIND_KERNEL(start int, end int, shortName int)")
t = 1000000 + 500000000
for i in range(${tokens}):
    db.execute("insert into CUPTI_ACTIVITY_KIND_MEMCPY values(?, ?, 1600000, 1)", (t, t + 30000))
    db.execute("insert into CUPTI_ACTIVITY_KIND_MEMCPY values(?, ?, 4096, 2)", (t + 60000, t + 61000))
    if ${withKernels ? "True" : "False"}:
        db.execute("insert into CUPTI_ACTIVITY_KIND_KERNEL values(?, ?, 1)", (t + 30000, t + 40000))
        db.execute("insert into CUPTI_ACTIVITY_KIND_KERNEL values(?, ?, 2)", (t + 35000, t + 50000))
    db.execute("insert into CUPTI_ACTIVITY_KIND_RUNTIME values(?, ?, 3)", (t + 20000, t + 25000))
    db.execute("insert into CUPTI_ACTIVITY_KIND_RUNTIME values(?, ?, 4)", (t + 30000, t + 50000))
    t += 100000
db.commit()
`;
  execFileSync("python3", ["-c", py, path]);
}

test("trace summary: decode window after the load, GPU busy as the union of kernels and copies, copy rate, top kernels", { skip }, () => withTempDir("trace-sum-", (dir) => {
  const db = join(dir, "t.sqlite");
  makeTrace(db, 10);
  const out = JSON.parse(execFileSync("python3", [SCRIPT, db], { encoding: "utf8" }));
  // The window runs from the load's end + 0.5 s to the last kernel's end: 9 rows of 100 us + 50 us.
  assert(Math.abs(out.windowMs - 0.95) < 1e-9, String(out.windowMs));
  // Per row the copy (30 us) and the two kernels (30..50 us) are busy back to back, the D2H copy at
  // 60 us adds 1 us: 51 us of 100, not the 30 + 10 + 15 + 1 a plain sum would say.
  assert(Math.abs(out.gpuBusyMs - 0.51) < 1e-9, String(out.gpuBusyMs));
  assert(Math.abs(out.kernelMs - 0.25) < 1e-9, String(out.kernelMs));
  assertEquals(out.h2dCopies, 10);
  assertEquals(out.h2dBytes, 16_000_000);
  assertEquals(out.otherCopies, 10);
  assert(Math.abs(out.h2dGBpsWhileCopying - 1.6e6 / 30000) < 1e-9, String(out.h2dGBpsWhileCopying));
  assertEquals(out.topKernels.map((k: { name: string }) => k.name), ["rms_norm", "mul_mat_vec_q"]);
  assertEquals(out.topKernels[0].count, 10);
  // The host side: 10 launches of 5 us and 10 waits of 20 us, named without nsys's version suffix.
  assertEquals(out.topApiCalls, [
    { name: "cudaStreamSynchronize", count: 10, ms: 0.2 },
    { name: "cudaLaunchKernel", count: 10, ms: 0.05 },
  ]);
  assert(Math.abs(out.hostSyncMs - 0.2) < 1e-9, String(out.hostSyncMs));
  assert(Math.abs(out.hostApiMs - 0.25) < 1e-9, String(out.hostApiMs));
  // A longer skip leaves fewer rows in the window.
  const later = JSON.parse(execFileSync("python3", [SCRIPT, db, "--skip-s", "0.5005"], { encoding: "utf8" }));
  assertEquals(later.h2dCopies, 5);
}));

test("trace summary: a trace without kernels, or none after the load, is an error (exit 1, the reason in JSON)", { skip }, () => withTempDir("trace-sum-", (dir) => {
  const none = join(dir, "none.sqlite");
  makeTrace(none, 3, false);
  let r = spawnSync("python3", [SCRIPT, none], { encoding: "utf8" });
  assertEquals(r.status, 1);
  assertEquals(JSON.parse(r.stdout).error, "no kernels in the trace");
  const early = join(dir, "early.sqlite");
  makeTrace(early, 3);
  r = spawnSync("python3", [SCRIPT, early, "--skip-s", "10"], { encoding: "utf8" });
  assertEquals(r.status, 1);
  assertEquals(JSON.parse(r.stdout).error, "no activity after the model load");
}));

/** Runs bench/gpu/hybrid_trace.sh with its work and OUT folders under `dir`, `path` as PATH. */
function runTrace(dir: string, args: string[], path: string, env: Record<string, string> = {}) {
  return spawnSync("bash", ["bench/gpu/hybrid_trace.sh", ...args], {
    encoding: "utf8",
    env: { ...process.env, OUT: join(dir, "out"), SPILLWAY_BENCH_WORK: join(dir, "work"), PATH: path, ...env },
  });
}

test("hybrid_trace.sh: without nsys, the patched build or the model it writes why to OUT/trace.json and runs nothing", { skip }, () => withTempDir("trace-sh-", (dir) => {
  // A quote in the path must not break the JSON.
  const r = runTrace(dir, [join(dir, 'missing "q".gguf'), "36", "30"], "/usr/bin:/bin");
  assertEquals(r.status, 0);
  const j = JSON.parse(readFileSync(join(dir, "out", "trace.json"), "utf8"));
  assert(j.error.startsWith("missing: "), j.error);
  assert(j.error.includes('missing "q".gguf'), j.error);
}));

test("hybrid_trace.sh: one entry per mode in OUT/trace.json (valid JSON), each with the run's tokens/s and its trace summary", { skip }, () => withTempDir("trace-sh-", (dir) => {
  // A fake nsys that runs the command it profiles and writes the export nsys would; a fake
  // llama-bench that prints llama-bench's JSON and the read mode it was given.
  const bin = join(dir, "bin");
  const llama = join(dir, "work", "llama.cpp-hybrid", "build", "bin");
  mkdirSync(bin, { recursive: true });
  mkdirSync(llama, { recursive: true });
  const traceDb = join(dir, "template.sqlite");
  makeTrace(traceDb, 4);
  writeFileSync(join(bin, "nsys"), `#!/bin/bash
out=""
while [[ "$1" != --export=sqlite ]]; do [[ "$1" == -o ]] && { out="$2"; shift; }; shift; done
shift
echo "Collecting data..."
"$@" || exit $?
cp "${traceDb}" "$out.sqlite"
`);
  writeFileSync(join(llama, "llama-bench"), `#!/bin/bash
[[ "$LLAMA_MOE_HYBRID_GPU_READ" == copy ]] && echo '[{"avg_ts": 44.5}]' || echo '[{"avg_ts": 15.25}]'
`);
  chmodSync(join(bin, "nsys"), 0o755);
  chmodSync(join(llama, "llama-bench"), 0o755);
  const model = join(dir, "m.gguf");
  writeFileSync(model, "GGUF");
  const r = runTrace(dir, [model, "36", "120"], `${bin}:/usr/bin:/bin`, { SPILLWAY_TRACE_MODES: "copy-0.375 inplace-1.0" });
  assertEquals(r.status, 0, r.stderr);
  const j = JSON.parse(readFileSync(join(dir, "out", "trace.json"), "utf8"));
  assertEquals(Object.keys(j), ["copy-0.375", "inplace-1.0"]);
  assertEquals(j["copy-0.375"].rc, 0);
  assertEquals(j["copy-0.375"].decodeTps, 44.5);
  assertEquals(j["inplace-1.0"].decodeTps, 15.25);
  assertEquals(j["inplace-1.0"].trace.h2dCopies, 4);
}));
