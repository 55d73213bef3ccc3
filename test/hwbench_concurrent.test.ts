// Issue 22: the concurrent tier figure. The concurrent_bw helper runs against the fake libcuda
// (test/hwbench_fake_libcuda.c: its "kernel" reads the mapped buffer on the host), so the driver
// calls, the kernel parameters, the JSON output and the error paths are checked here; the real
// figures come from the GPU machine.
import { test } from "node:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { measureConcurrent, overlapGains, parseConcurrentOutput, readConcurrentJson } from "../engine/hardware/measure/concurrent.ts";
import { assetPath, buildHelper } from "../engine/hardware/measure/native.ts";
import { concurrentMeasured, measuredOverlapGains } from "../engine/hardware/measure/profile.ts";
import { buildC, ROOT } from "./_native.ts";
import { withTempDir } from "./_tmp.ts";
import { assert, assertEquals, assertGreater, assertRejects, assertStringIncludes, assertThrows } from "./_assert.ts";

const fake = buildC("libfakecuda.so", ["test/hwbench_fake_libcuda.c"], ["-shared", "-fPIC"]);

test("concurrent probe: CPU and fake GPU rates alone and together, summarized", () => withTempDir("hwbench-conc-", async (dir) => {
  const r = await measureConcurrent({ cacheDir: dir, libcuda: fake, threads: 2, cpuBytes: 16 << 20, gpuBytes: 8 << 20, seconds: 0.1, repeats: 2 });
  assertEquals(r.threads, 2);
  assertEquals(r.cpuBytes, 16 << 20);
  assertEquals(r.gpuBytes, 8 << 20);
  for (const m of [r.cpuAloneGBps, r.gpuAloneGBps, r.cpuTogetherGBps, r.gpuTogetherGBps]) {
    assertGreater(m.min, 0);
    assert(m.min <= m.median && m.median <= m.max);
    assertEquals(m.unit, "GB/s");
  }
  assertEquals(r.sumTogetherGBps, r.cpuTogetherGBps.median + r.gpuTogetherGBps.median);
  assertEquals(r.gainVsBestAlone, r.sumTogetherGBps / Math.max(r.cpuAloneGBps.median, r.gpuAloneGBps.median));
  // The shipped PTX has llama.cpp's Q8_0 load pattern too: the fake ran it over whole rows of the buffer.
  assertGreater(r.gpuQ8AloneGBps!.min, 0);
  assert(r.gpuQ8AloneGBps!.min <= r.gpuQ8AloneGBps!.median && r.gpuQ8AloneGBps!.median <= r.gpuQ8AloneGBps!.max);
  // The copy-engine passes (the fake's cuMemcpyHtoDAsync_v2 copies on the host), alone and with the CPU.
  for (const m of [r.copyAloneGBps!, r.copyTogetherGBps!, r.cpuWithCopyGBps!]) {
    assertGreater(m.min, 0);
    assert(m.min <= m.median && m.median <= m.max);
    assertEquals(m.unit, "GB/s");
  }
}));

test("concurrent probe: a driver without the kernel's entry fails with the driver call named", () => withTempDir("hwbench-conc-", async (dir) => {
  const exe = buildHelper("concurrent_bw", dir, ["-pthread", "-ldl"]);
  const ptx = join(dir, "other.ptx");
  // The module loads, but has no spillway_read entry: cuModuleGetFunction fails.
  writeFileSync(ptx, readFileSync(assetPath("read_kernel.ptx"), "utf8").replace(/spillway_read/g, "other_kernel"));
  let stderr = "";
  try {
    execFileSync(exe, [fake, ptx, "--threads", "1", "--cpu-bytes", "1M", "--gpu-bytes", "1M", "--seconds", "0.05", "--repeats", "1"], { stdio: "pipe" });
  } catch (e) {
    stderr = String((e as { stderr: Uint8Array }).stderr);
  }
  assertStringIncludes(stderr, "cu.modFn(&fn, mod, \"spillway_read\") failed");
  // Bad options are usage errors (exit 2) naming the option.
  let code = 0;
  try {
    execFileSync(exe, [fake, assetPath("read_kernel.ptx"), "--threads", "0"], { stdio: "pipe" });
  } catch (e) {
    code = (e as { status: number }).status;
    assertStringIncludes(String((e as { stderr: Uint8Array }).stderr), "bad option --threads 0");
  }
  assertEquals(code, 2);
  await assertRejects(() => measureConcurrent({ cacheDir: dir, libcuda: join(dir, "missing.so"), threads: 1, cpuBytes: 1 << 20, gpuBytes: 1 << 20, seconds: 0.05, repeats: 1 }), Error, "cannot load the CUDA driver");
}));

test("concurrent probe: a PTX without the Q8_0 pattern kernel still measures the paths, without that figure", () => withTempDir("hwbench-conc-", (dir) => {
  const exe = buildHelper("concurrent_bw", dir, ["-pthread", "-ldl"]);
  const ptx = join(dir, "old.ptx");
  writeFileSync(ptx, readFileSync(assetPath("read_kernel.ptx"), "utf8").replace(/spillway_read_q8/g, "older_kernel"));
  const out = execFileSync(exe, [fake, ptx, "--threads", "1", "--cpu-bytes", "1M", "--gpu-bytes", "1M", "--seconds", "0.05", "--repeats", "1"], { encoding: "utf8" });
  const r = parseConcurrentOutput(out);
  assertGreater(r.gpuAloneGBps.median, 0);
  assertEquals(r.gpuQ8AloneGBps, undefined);
  assertEquals(out.includes("gpuQ8AloneGBps"), false);
}));

test("concurrent probe output: fields checked by name", () => {
  const ok = '{"threads":16,"cpuBytes":4294967296,"gpuBytes":4294967296,"seconds":1.5,"sink":0,"cpuAloneGBps":[84.5,84.1],"gpuAloneGBps":[51.4,51.3],"cpuTogetherGBps":[78.1,78.3],"gpuTogetherGBps":[51.0,51.1]}';
  const r = parseConcurrentOutput(`progress\n${ok}\n`);
  assertEquals(r.cpuAloneGBps.median, (84.5 + 84.1) / 2);
  assertEquals(Math.round(r.sumTogetherGBps * 100) / 100, Math.round(((78.1 + 78.3) / 2 + (51.0 + 51.1) / 2) * 100) / 100);
  assertThrows(() => parseConcurrentOutput("garbage"), Error, "output is not JSON");
  assertThrows(() => parseConcurrentOutput(ok.replace('"gpuTogetherGBps":[51.0,51.1]', '"gpuTogetherGBps":[]')), Error, "field gpuTogetherGBps must be a non-empty array");
  assertThrows(() => parseConcurrentOutput(ok.replace('"threads":16', '"threads":0')), Error, "field threads must be a positive number");
  assertThrows(() => parseConcurrentOutput(ok.replace('"cpuAloneGBps":[84.5,84.1]', '"cpuAloneGBps":[84.5]')), Error, "has 2 repeats, the others 1");
  // The Q8_0 pattern figure is optional; present, it has one value per repeat.
  assertEquals(r.gpuQ8AloneGBps, undefined);
  const q8 = parseConcurrentOutput(ok.replace("}", ',"gpuQ8AloneGBps":[23.1,22.9]}'));
  assertEquals(q8.gpuQ8AloneGBps!.median, 23);
  assertThrows(() => parseConcurrentOutput(ok.replace("}", ',"gpuQ8AloneGBps":[23.1]}')), Error, "field gpuQ8AloneGBps must be an array of 2 positive numbers");
  // The copy-engine figures are optional too, but come as a group of three, one value per repeat.
  assertEquals(r.copyAloneGBps, undefined);
  const copy = ',"copyAloneGBps":[52.1,52.3],"copyTogetherGBps":[50.0,50.2],"cpuWithCopyGBps":[70.5,70.7]}';
  const c = parseConcurrentOutput(ok.replace("}", copy));
  assertEquals(c.copyAloneGBps!.median, 52.2);
  assertEquals(c.copyTogetherGBps!.median, 50.1);
  assertEquals(c.cpuWithCopyGBps!.median, 70.6);
  // The copy engine's bound: both paths together over the faster alone; absent without the passes.
  assertEquals(c.copyGainVsBestAlone, (70.6 + 50.1) / Math.max(c.cpuAloneGBps.median, 52.2));
  assertEquals(r.copyGainVsBestAlone, undefined);
  assertThrows(() => parseConcurrentOutput(ok.replace("}", ',"copyAloneGBps":[52.1,52.3]}')), Error, "come together; got only copyAloneGBps");
  assertThrows(() => parseConcurrentOutput(ok.replace("}", copy.replace("[70.5,70.7]", "[70.5,0]"))), Error, "field cpuWithCopyGBps must be an array of 2 positive numbers");
});

test("readConcurrentJson: a committed probe file in either form (the helper's arrays, or medians); gains from the medians; a bad field is named", () => {
  // The helper's own output (the 2026-12-06-hybrid run committed it so): medians of the repeats.
  const raw = readConcurrentJson(readFileSync(join(ROOT, "bench/results/2026-12-06-hybrid/concurrent.json"), "utf8"));
  assertEquals(raw.cpuTogetherGBps.median, 85.987);
  const g0 = (85.987 + 50.352) / 114.81;
  assertEquals(overlapGains(raw), { zeroCopy: g0 });
  // A saved result with the copy passes (2026-12-07-hybrid-threads): the copy mode's bound there.
  const saved = readConcurrentJson(readFileSync(join(ROOT, "bench/results/2026-12-07-hybrid-threads/concurrent.json"), "utf8"));
  const g = overlapGains(saved);
  assertEquals(g.copy, (109.95 + 49.739) / 150.309);
  assertEquals(+g.copy!.toFixed(2), 1.06);
  assertEquals(saved.gpuQ8AloneGBps!.median, 47.21);
  // A profile's measured figures hold the same rates: the planner's bound equals the probe's.
  const measured = concurrentMeasured(saved);
  assertEquals(measured.concurrentCpuWithCopyGBps!.median, 109.95);
  assertEquals(measured.concurrentGpuQ8AloneGBps!.median, 47.21);
  assertEquals(measuredOverlapGains(measured), g);
  assertEquals(measuredOverlapGains(concurrentMeasured(raw)), { zeroCopy: g0 });
  assertEquals(measuredOverlapGains({}), null);
  assertThrows(() => readConcurrentJson('{"cpuAloneGBps":{"median":1},"gpuAloneGBps":{"median":1},"cpuTogetherGBps":{},"gpuTogetherGBps":{"median":1}}'), Error, "field cpuTogetherGBps must have a positive median");
  assertThrows(() => readConcurrentJson('{"cpuAloneGBps":{"median":1},"gpuAloneGBps":{"median":1},"cpuTogetherGBps":{"median":1},"gpuTogetherGBps":{"median":1},"copyAloneGBps":{"median":1}}'), Error, "come together");
  assertThrows(() => readConcurrentJson("[1]"), Error, "not a JSON object");
  assertThrows(() => readConcurrentJson("{"), Error, "not JSON");
});
