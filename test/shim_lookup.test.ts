// Lookups cannot bypass the shim: dlsym on a CUDA library handle, cuGetProcAddress (v1, v2, by base
// name, per-thread stream variants, itself), cudaGetDriverEntryPoint(ByVersion) all answer hooks;
// and the runtime hooks bind whichever libcudart the program uses (12 or 13, linked or dlopened).
import { test } from "node:test";
import { assertEquals } from "./_assert.ts";
import { MiB, ofOp, runProg } from "./shim_helpers.ts";

const base = { FAKECUDA_VRAM: "256M", SPILLWAY_VRAM_BUDGET: "100M", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" };
// path -> the lookup answers the shim's hook (true) or the driver's own function (false)
const expected: Record<string, boolean> = {
  "dlsym-default cuMemAlloc_v2": true,
  "dlsym-handle cuMemAlloc_v2": true,
  "dlsym-handle cuGetProcAddress_v2": true,
  "dlsym-handle cuGetProcAddress": true,
  "dlsym-handle-unhooked cuCtxGetDevice": false,
  "gpa-v2 cuMemAlloc_v2": true,
  "gpa-v1 cuMemFree_v2": true,
  "gpa-from-dlsym cuMemGetInfo_v2": true,
  "gpa-ptsz cuMemAllocAsync_ptsz": true,
  "gpa-async cuMemFreeAsync": true,
  "gpa-old-version cuMemAlloc_v2": false, // version 3000 asks for the 32-bit cuMemAlloc, not hooked
  "gpa-self cuGetProcAddress_v2": true,
  "gpa-unhooked cuCtxGetDevice": false,
  "entry-point cuMemGetInfo_v2": true,
  "entry-point-by-version cuDeviceTotalMem_v2": true,
  "dlsym-nvml nvmlDeviceGetMemoryInfo_v2": true,
  "dlsym-runtime cudaMalloc": true,
};

test("shim: every lookup path of a CUDA function answers the shim's hook", async () => {
  const r = await runProg(["init", "look"], { env: base });
  assertEquals(r.status, 0, r.stderr);
  const got = Object.fromEntries(ofOp(r, "look").map((l) => [`${l.path} ${l.name}`, l.hooked]));
  assertEquals(got, expected);
  // What is not hooked is the driver's own function, not something else.
  for (const l of ofOp(r, "look")) if (!l.hooked && l.path !== "dlsym-nvml") assertEquals(l.real, true, l.path);
});

test("shim: without the shim the same lookups answer the driver's functions (control)", async () => {
  const r = await runProg(["init", "look"], { shim: false });
  for (const l of ofOp(r, "look")) {
    assertEquals(l.hooked, false, l.path);
    if (!["dlsym-nvml", "dlsym-runtime"].includes(l.path)) assertEquals(l.real, true, l.path);
  }
});

test("shim: allocations through looked-up functions are placed by the shim", async () => {
  const r = await runProg(["init", "a:gpa:150M", "a:dl:150M", "a:ep:150M", "s", "f:gpa:0", "f:drv:1", "f:rt:2", "s"], {
    env: { ...base, SPILLWAY_VRAM_BUDGET: "0" },
  });
  assertEquals(ofOp(r, "a").map((l) => l.r), [0, 0, 0]);
  const [s, after] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm, s.shim.allocs], [0, 450 * MiB, 3]);
  assertEquals([after.fake.hostVmm, after.shim.frees], [0, 3]);
});

for (const runtime of [12, 13] as const) {
  test(`shim: cudaMalloc binds to the libcudart.so.${runtime} the program links`, async () => {
    const r = await runProg(["init", "a:rt:150M", "a:rt:10M", "s", "f:rt:0", "f:rt:1", "s"], { runtime, env: base });
    assertEquals(ofOp(r, "a").map((l) => l.r), [0, 0]);
    const [s, after] = ofOp(r, "s");
    assertEquals(s.fake.rtCalls, runtime, "the program's own runtime answered");
    // Each runtime call is placed once (the driver call beneath it is not counted again).
    assertEquals([s.shim.allocs, s.shim.splits, s.fake.vramUsed, s.fake.hostVmm], [2, 1, 100 * MiB, 60 * MiB]);
    assertEquals([after.shim.frees, after.fake.vramUsed, after.fake.hostVmm], [2, 0, 0]);
  });
}

test("shim: a libcudart loaded at run time with RTLD_LOCAL is bound through dlsym", async () => {
  const r = await runProg(["init", "loadrt:libcudart.so.12", "a:dlrt:150M", "s", "f:dlrt:0", "s"], { env: base });
  assertEquals(ofOp(r, "loadrt")[0], { op: "loadrt", loaded: true, version: 12, hooked: true });
  assertEquals(ofOp(r, "a")[0].r, 0);
  const [s, after] = ofOp(r, "s");
  assertEquals([s.shim.splits, s.fake.vramUsed, s.fake.hostVmm], [1, 100 * MiB, 50 * MiB]);
  assertEquals([after.fake.vramUsed, after.fake.hostVmm], [0, 0]);
});
