// ffi/cuda.ts and the GPU measurements against a fake libcuda built from test/hwbench_fake_libcuda.c:
// marshalling, error reporting, bookkeeping and cleanup (the real figures come from the GPU machine).
import { test } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaError, loadCuda } from "../ffi/cuda.ts";
import { loadFfi } from "../ffi/mod.ts";
import { measureGpu, readKernelPtx } from "../engine/hardware/measure/gpu.ts";
import { runBench } from "../engine/hardware/measure/run.ts";
import { buildC } from "./_native.ts";
import { assert, assertEquals, assertGreater, assertMatch, assertRejects, assertStringIncludes, assertThrows } from "./_assert.ts";

const fake = buildC("libfakecuda.so", ["test/hwbench_fake_libcuda.c"], ["-shared", "-fPIC"]);

async function liveCount(): Promise<number> {
  const ffi = await loadFfi();
  const lib = ffi.open(fake, { fake_live_allocations: { args: [], result: "i64" } });
  return Number(lib.symbols.fake_live_allocations());
}

test("cuda bindings: out-parameters, names and checked errors", async () => {
  const cu = await loadCuda(fake);
  cu.init();
  assertEquals(cu.driverVersion(), 13000);
  assertEquals(cu.deviceCount(), 1);
  const dev = cu.device(0);
  assertEquals(cu.deviceName(dev), "Fake GPU 9000");
  assertEquals(cu.totalMem(dev), 8 * 1024 ** 3);
  assertEquals(cu.attribute(dev, 16), 4);
  const e = assertThrows(() => cu.memAlloc(7 * 1024 ** 3), CudaError, "CUDA_ERROR_OUT_OF_MEMORY");
  assertEquals(e.code, 2);
  assertStringIncludes(e.message, "cuMemAlloc_v2(7516192768 bytes)");
  assertThrows(() => cu.moduleLoadData("not ptx"), CudaError, "cuModuleLoadData");
  // A round trip through "device" memory with 64-bit pointers.
  const ctxBefore = await liveCount();
  cu.primaryCtxRetain(dev);
  const d = cu.memAlloc(4096);
  const h = cu.memHostAlloc(4096, 2);
  cu.ffi.write(h, new Uint8Array(4096).fill(7));
  cu.memcpyHtoD(d, h, 4096);
  cu.memsetD8(h, 0, 4096);
  cu.memcpyDtoH(h, d, 4096);
  assertEquals(cu.ffi.read(h, 4)[3], 7);
  cu.memFree(d);
  cu.memFreeHost(h);
  cu.primaryCtxRelease(dev);
  assertEquals(await liveCount(), ctxBefore);
  cu.close();
});

test("GPU measurements run the PTX entry with correct kernel parameters and free everything", async () => {
  const cu = await loadCuda(fake);
  const before = await liveCount();
  const steps: string[] = [];
  const r = await measureGpu(cu, {
    repeats: 3,
    copyBytes: 8 << 20,
    hostReadBytes: 8 << 20,
    vramBytes: 4 << 20,
    pinBytes: 4 << 20,
    onStep: (s) => steps.push(s),
  });
  assertEquals(r.name, "Fake GPU 9000");
  assertEquals(r.computeCapability, "9.0");
  assertEquals(r.cudaVersion, "13.0");
  assertEquals(r.pciAddress, "0000:1b:00.0");
  for (const [k, m] of Object.entries(r.measured)) {
    assertGreater(m.min, 0, k);
    assert(m.min <= m.median && m.median <= m.max, k);
  }
  assertEquals(r.measured.vramGBps.unit, "GB/s");
  assertEquals(r.measured.hostRegisterMsPerGiB.unit, "ms/GiB");
  assert(steps.some((s) => s.includes("zero-copy")));
  assertEquals(await liveCount(), before, "every allocation, event, module and context released");
  cu.close();
});

test("a failing step still releases what was allocated", async () => {
  const cu = await loadCuda(fake);
  const before = await liveCount();
  // A PTX without the entry point: the module loads, cuModuleGetFunction fails.
  const ptx = readKernelPtx().replace(/spillway_read/g, "other_kernel");
  await assertRejects(
    () => measureGpu(cu, { repeats: 1, copyBytes: 1 << 20, hostReadBytes: 1 << 20, vramBytes: 1 << 20, pinBytes: 1 << 20, ptx }),
    CudaError,
    "cuModuleGetFunction(spillway_read)",
  );
  assertEquals(await liveCount(), before);
  cu.close();
});

test("bench with a GPU: profile fields come from the measurements, cache keyed by GPU", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hwbench-gpu-"));
  try {
    const err: string[] = [];
    const r = await runBench({
      cacheDir: dir,
      bytes: 8 << 20,
      repeats: 2,
      skip: [],
      loadCuda: () => loadCuda(fake),
      libcudaPath: fake,
      stderr: (t) => err.push(t),
    });
    assertEquals(r.cached, false);
    assertEquals(r.ids.gpuName, "Fake GPU 9000");
    assertMatch(r.key, /^Fake GPU 9000 \| driver /);
    const g = r.profile.gpu!;
    assertEquals(r.profile.source, "bench");
    assertEquals(g.h2dGBps, r.profile.measured!.h2dGBps.median);
    assertEquals(g.zeroCopyGBps, r.profile.measured!.zeroCopyGBps.median);
    assertEquals(g.vramGBps, r.profile.measured!.vramGBps.median);
    assertEquals(g.fp16Tflops, 100, "unknown GPU: default, with a note");
    assert(r.profile.notes!.some((n) => n.includes("fp16 TFLOP/s not measured")));
    assert(err.join("").includes("[1/4] GPU Fake GPU 9000"));
    // The concurrent tier (issue 22) ran the C helper against the same fake driver.
    assert(err.join("").includes("alone and together"));
    const m = r.profile.measured!;
    for (const k of ["concurrentCpuAloneGBps", "concurrentGpuAloneGBps", "concurrentCpuGBps", "concurrentGpuGBps", "concurrentGpuQ8AloneGBps",
      "concurrentCopyAloneGBps", "concurrentCopyGBps", "concurrentCpuWithCopyGBps"]) {
      assertGreater(m[k].median, 0, k);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
