// The shim's placement under the fake CUDA driver: exact bytes of splits and host placements,
// reported memory, frees, backings and their fallbacks, placement rules, bad input as CUDA answers it.
import { test } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePlacementMap } from "../shim/placement.ts";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { MiB, ofOp, runProg } from "./shim_helpers.ts";

const GiB = 1024 * MiB;
const base = { FAKECUDA_VRAM: "256M", SPILLWAY_VRAM_BUDGET: "100M", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" };

test("shim: split = one range, VRAM head up to the budget + host tail; small allocations stay in VRAM; frees return everything", async () => {
  const r = await runProg(
    ["init", "a:drv:40M", "a:drv:100M", "w:1:100M", "a:rt:8M", "a:drv:512K", "s", "f:drv:1", "f:rt:2", "f:drv:0", "f:drv:3", "s"],
    { env: base },
  );
  assertEquals(r.status, 0, r.stderr);
  assertEquals(ofOp(r, "a").map((l) => l.r), [0, 0, 0, 0]);
  assertEquals(ofOp(r, "w")[0].ok, true, "the split range is usable end to end");
  const [s, after] = ofOp(r, "s");
  const vram = 40 * MiB + 60 * MiB + 512 * 1024; // 40M plain, 60M head of the split, 512K below min spill
  const host = 40 * MiB + 8 * MiB; // 40M tail of the split, 8M wholly in host memory (budget used up)
  assertEquals(s.fake.vramUsed, vram);
  assertEquals(s.fake.hostVmm, host);
  assertEquals(s.fake.pinned, 0);
  assertEquals(s.fake.reservations, 2);
  assertEquals(s.fake.mappings, 3);
  assertEquals(s.shim.tiers[0].bytes, vram);
  assertEquals(s.shim.tiers[0].allocs, 3);
  assertEquals(s.shim.tiers[1].bytes, host);
  assertEquals(s.shim.tiers[1].allocs, 2);
  assertEquals([s.shim.allocs, s.shim.spills, s.shim.splits, s.shim.failures], [4, 2, 1, 0]);
  assertEquals(s.shim.largestAlloc, 100 * MiB);
  assertEquals(s.shim.largestSpill, 40 * MiB);
  assertEquals(s.shim.budget, 100 * MiB);
  // Reported memory: VRAM plus the host pool (1G), minus what is used of each.
  const total = 256 * MiB + GiB, free = 256 * MiB - vram + GiB - host;
  assertEquals(s.cu, { r: 0, free, total });
  assertEquals(s.rt, { r: 0, free, total });
  assertEquals(s.deviceTotal, total);
  assertEquals(s.nvml, { total, free, used: vram + host });
  assertEquals(s.nvml2, { total, free: free - 16 * MiB, used: vram + host, reserved: 16 * MiB });
  // Everything back where it came from.
  assertEquals(ofOp(r, "f").map((l) => l.r), [0, 0, 0, 0]);
  assertEquals([after.fake.vramUsed, after.fake.hostVmm, after.fake.live, after.fake.reservations, after.fake.mappings], [0, 0, 0, 0, 0]);
  assertEquals(after.shim.tiers.map((t: { bytes: number }) => t.bytes), [0, 0, 0, 0]);
  assertEquals(after.shim.tiers[0].peak, vram);
  assertEquals(after.shim.frees, 4);
  assertEquals(after.fake.ctxSyncs, 2, "each host-backed free waited for the device, as cudaFree does");
  assertEquals(after.cu, { r: 0, free: total, total });
});

test("shim: the default budget is free VRAM minus the reserve", async () => {
  const r = await runProg(["init", "a:drv:250M", "s", "f:drv:0"], {
    env: { FAKECUDA_VRAM: "256M", SPILLWAY_RESERVE: "56M", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" },
  });
  const [s] = ofOp(r, "s");
  assertEquals(s.shim.budget, 200 * MiB);
  assertEquals(s.fake.vramUsed, 200 * MiB);
  assertEquals(s.fake.hostVmm, 50 * MiB);
});

test("shim: with the default budget, late allocations that fit the reserve stay in VRAM whole", async () => {
  // 256M card, 56M reserve: the 250M "weights" split 200M + 50M; the 40M "KV cache" and 12M
  // "compute buffer" come after the budget is spent and go to the reserve; 8M more would not fit it.
  const r = await runProg(["init", "a:drv:250M", "a:drv:40M", "a:drv:12M", "a:drv:8M", "s", "f:drv:3", "f:drv:2", "f:drv:1", "f:drv:0", "s"], {
    env: { FAKECUDA_VRAM: "256M", SPILLWAY_RESERVE: "56M", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" },
  });
  assertEquals(ofOp(r, "a").map((l) => l.r), [0, 0, 0, 0]);
  const [s, after] = ofOp(r, "s");
  assertEquals(s.shim.budget, 200 * MiB);
  assertEquals(s.fake.vramUsed, 252 * MiB);
  assertEquals(s.fake.hostVmm, 50 * MiB + 8 * MiB);
  assertEquals([s.shim.spills, s.shim.splits], [2, 1]);
  assertEquals([after.fake.vramUsed, after.fake.hostVmm], [0, 0]);
});

test("shim: the reserve serves at most SPILLWAY_RESERVE_ALLOCS live late allocations; a free gives the slot back", async () => {
  // Weights loaded tensor by tensor (PyTorch) must not fill the reserve: after two late 10M
  // allocations the third spills; freeing one lets the next late allocation into the reserve again.
  const r = await runProg(["init", "a:drv:250M", "a:drv:10M", "a:drv:10M", "a:drv:10M", "s", "f:drv:1", "a:drv:10M", "s"], {
    env: { FAKECUDA_VRAM: "256M", SPILLWAY_RESERVE: "56M", SPILLWAY_RESERVE_ALLOCS: "2", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" },
  });
  assertEquals(ofOp(r, "a").map((l) => l.r), [0, 0, 0, 0, 0]);
  const [s, after] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm], [220 * MiB, 60 * MiB]);
  assertEquals([after.fake.vramUsed, after.fake.hostVmm], [220 * MiB, 60 * MiB]);
  assertEquals(after.shim.spills, 2, "the split weights and the third late allocation");
  // Not a count: said on stderr, the default (4) kept, so all three late allocations fit the reserve.
  const bad = await runProg(["init", "a:drv:250M", "a:drv:10M", "a:drv:10M", "a:drv:10M", "s"], {
    env: { FAKECUDA_VRAM: "256M", SPILLWAY_RESERVE: "56M", SPILLWAY_RESERVE_ALLOCS: "2K", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" },
  });
  assertMatch(bad.stderr, /SPILLWAY_RESERVE_ALLOCS=2K: not a count/);
  assertEquals(ofOp(bad, "s")[0].fake.vramUsed, 230 * MiB);
});

test("shim: an allocation below the min spill size that VRAM refuses goes to host memory instead of failing", async () => {
  // 64M card, 8M reserve: three 20M allocations fit the device, the fourth does not; CUDA would say
  // out of memory, the shim places it in host memory.
  const r = await runProg(["init", "a:drv:20M", "a:drv:20M", "a:drv:20M", "a:drv:20M", "s"], {
    env: { FAKECUDA_VRAM: "64M", SPILLWAY_RESERVE: "8M", SPILLWAY_MIN_SPILL: "32M", SPILLWAY_HOST_LIMIT: "1G" },
  });
  assertEquals(ofOp(r, "a").map((l) => l.r), [0, 0, 0, 0]);
  const [s] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm], [60 * MiB, 20 * MiB]);
  assertEquals(s.shim.tiers[0].bytes, 60 * MiB);
});

test("shim: a split tail is rounded up to the 2 MiB granularity and accounted as placed", async () => {
  const r = await runProg(["init", "a:drv:150000001", "s", "f:drv:0", "s"], { env: base });
  const [s, after] = ofOp(r, "s");
  const span = Math.ceil(150000001 / (2 * MiB)) * 2 * MiB;
  assertEquals(s.fake.vramUsed, 100 * MiB);
  assertEquals(s.fake.hostVmm, span - 100 * MiB);
  assertEquals(s.shim.tiers[1].bytes, span - 100 * MiB);
  assertEquals(after.fake.hostVmm, 0);
});

test("shim: async and pool allocations spill too; stream-ordered frees wait for their stream", async () => {
  const r = await runProg(
    ["init", "a:drva:200M", "a:rta:150M", "a:drvp:130M", "a:rtp:120M", "a:drvap:110M", "s", "f:drva:0", "f:rta:1", "f:drv:2", "f:rt:3", "f:drva:4", "s"],
    { env: { ...base, SPILLWAY_VRAM_BUDGET: "0" } },
  );
  assertEquals(ofOp(r, "a").map((l) => l.r), [0, 0, 0, 0, 0]);
  const [s, after] = ofOp(r, "s");
  assertEquals(s.fake.hostVmm, (200 + 150 + 130 + 120 + 110) * MiB);
  assertEquals(s.fake.vramUsed, 0);
  assertEquals(ofOp(r, "f").map((l) => l.r), [0, 0, 0, 0, 0]);
  assertEquals(after.fake.streamSyncs, 3, "three stream-ordered frees synchronized their stream");
  assertEquals(after.fake.ctxSyncs, 2, "two plain frees synchronized the context");
  assertEquals([after.fake.hostVmm, after.fake.reservations], [0, 0]);
});

test("shim: SPILLWAY_BACKING=mapped places the whole allocation in mapped pinned memory", async () => {
  const r = await runProg(["init", "a:drv:200M", "w:0:200M", "s", "f:drv:0", "s"], { env: { ...base, SPILLWAY_BACKING: "mapped" } });
  const [s, after] = ofOp(r, "s");
  assertEquals(ofOp(r, "w")[0].ok, true);
  assertEquals([s.fake.pinned, s.fake.vramUsed, s.fake.hostVmm], [200 * MiB, 0, 0]);
  assertEquals(s.shim.tiers[2].bytes, 200 * MiB);
  assertEquals([after.fake.pinned, after.fake.live], [0, 0]);
});

test("shim: where the driver refuses host VMM allocations, auto falls back to mapped pinned memory", async () => {
  const r = await runProg(["init", "a:drv:200M", "a:drv:50M", "s", "f:drv:0", "f:drv:1", "s"], {
    env: { ...base, FAKECUDA_NO_HOST_VMM: "1" },
  });
  assertEquals(ofOp(r, "a").map((l) => l.r), [0, 0]);
  const [s, after] = ofOp(r, "s");
  // The 200M allocation could not be split: all of it went to mapped memory; 50M fit the budget.
  assertEquals([s.fake.pinned, s.fake.hostVmm, s.fake.vramUsed, s.fake.reservations], [200 * MiB, 0, 50 * MiB, 0]);
  assertEquals(s.shim.flags & 2, 2, "the record says VMM host allocations are unsupported");
  assertEquals(s.shim.hostFailures, 1);
  assertEquals([after.fake.pinned, after.fake.live], [0, 0]);
});

test("shim: when the budget says yes but the device is full, the allocation goes to host memory", async () => {
  const r = await runProg(["init", "a:drv:100M", "s"], { env: { ...base, FAKECUDA_VRAM: "64M", SPILLWAY_VRAM_BUDGET: "1G" } });
  assertEquals(ofOp(r, "a")[0].r, 0);
  const [s] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm], [0, 100 * MiB]);
});

test("shim: host backing failures answer out of memory and leave nothing behind", async () => {
  // Over SPILLWAY_HOST_LIMIT: refused before CUDA is asked.
  let r = await runProg(["init", "a:drv:100M", "a:rt:100M", "s"], { env: { ...base, SPILLWAY_VRAM_BUDGET: "32M", SPILLWAY_HOST_LIMIT: "64M" } });
  assertEquals(ofOp(r, "a").map((l) => [l.r, l.ptr]), [[2, "0x0"], [2, "0x0"]]);
  let [s] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm, s.fake.reservations, s.fake.mappings, s.shim.failures], [0, 0, 0, 0, 2]);
  // The driver refuses the host memory: the half-built range is taken apart.
  r = await runProg(["init", "a:drv:100M", "s"], { env: { ...base, SPILLWAY_VRAM_BUDGET: "32M", FAKECUDA_HOST_LIMIT: "16M" } });
  assertEquals(ofOp(r, "a")[0].r, 2);
  [s] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm, s.fake.reservations, s.fake.mappings, s.fake.live], [0, 0, 0, 0, 0]);
  assertEquals([s.shim.failures, s.shim.tiers[0].bytes, s.shim.tiers[1].bytes], [1, 0, 0]);
});

test("shim: bad input is answered as CUDA answers it", async () => {
  const r = await runProg(
    ["init", "fx:drv:deadbeef000", "fx:rt:deadbeef000", "a:drv:0", "a:rt:0", "a:drv:0xffffffffffffffff", "a:rt:0xfffffffffffff000",
      "a:drv:200M", "f:drv:4", "f:drv:4", "a:rt:50M", "f:rt:5", "f:rt:5", "s"],
    { env: base },
  );
  assertEquals(ofOp(r, "fx").map((l) => l.r), [1, 1], "free of an unknown pointer: invalid value");
  const a = ofOp(r, "a");
  assertEquals([a[0].r, a[0].ptr], [1, "0x0"], "cuMemAlloc of 0 bytes: invalid value");
  assertEquals([a[1].r, a[1].ptr], [0, "0x0"], "cudaMalloc of 0 bytes: success, NULL");
  assertEquals([a[2].r, a[3].r], [2, 2], "enormous sizes: out of memory");
  assertEquals(ofOp(r, "f").map((l) => l.r), [0, 1, 0, 1], "double free: invalid value");
  const [s] = ofOp(r, "s");
  assertEquals([s.shim.passthroughFrees, s.shim.failures, s.fake.live, s.fake.reservations, s.fake.vramUsed], [4, 2, 0, 0, 0]);
});

test("shim: placement rules from SPILLWAY_PLACEMENT direct allocations; bad lines are reported and skipped", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-place-"));
  try {
    const map = writePlacementMap(join(dir, "map"), [
      { index: 0, action: { head: 10 * MiB }, comment: "weights" },
      { size: 20 * MiB, action: "host" },
      { min: 30 * MiB, max: 40 * MiB, action: "vram" },
      { action: "auto" },
    ]);
    const r = await runProg(["init", "a:drv:50M", "a:drv:20M", "a:drv:35M", "a:drv:8M", "s"], {
      env: { ...base, SPILLWAY_VRAM_BUDGET: "20M", SPILLWAY_PLACEMENT: map, SPILLWAY_PLACEMENT_RULES: "index=3 sideways" },
    });
    assertEquals(ofOp(r, "a").map((l) => l.r), [0, 0, 0, 0]);
    const [s] = ofOp(r, "s");
    // 10M head + 35M rule-forced VRAM = 45M VRAM (over the 20M budget); 40M tail + 20M + 8M (no budget left) host.
    assertEquals(s.fake.vramUsed, (10 + 35) * MiB);
    assertEquals(s.fake.hostVmm, (40 + 20 + 8) * MiB);
    assertEquals(s.shim.splits, 1);
    assertMatch(r.stderr, /SPILLWAY_PLACEMENT_RULES:1: bad placement rule 'index=3 sideways'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("shim: SPILLWAY_REPORT=vram reports the device as it is; a size reports that total", async () => {
  let r = await runProg(["init", "a:drv:150M", "s"], { env: { ...base, SPILLWAY_REPORT: "vram" } });
  let [s] = ofOp(r, "s");
  assertEquals(s.cu, { r: 0, free: 256 * MiB - 100 * MiB, total: 256 * MiB });
  assertEquals(s.deviceTotal, 256 * MiB);
  r = await runProg(["init", "a:drv:150M", "s"], { env: { ...base, SPILLWAY_REPORT: "2G" } });
  [s] = ofOp(r, "s");
  assertEquals(s.cu, { r: 0, free: 2 * GiB - 150 * MiB, total: 2 * GiB });
  assertEquals(s.nvml.total, 2 * GiB);
});

test("shim: SPILLWAY_DISABLE=1 passes everything through", async () => {
  const r = await runProg(["init", "a:drv:300M", "a:drv:100M", "s"], { env: { ...base, SPILLWAY_DISABLE: "1" } });
  assertEquals(ofOp(r, "a").map((l) => l.r), [2, 0], "no spilling: the fake device says out of memory");
  const [s] = ofOp(r, "s");
  assertEquals(s.shim.flags & 1, 1);
  assertEquals([s.shim.allocs, s.fake.vramUsed, s.fake.hostVmm], [0, 100 * MiB, 0]);
  assertEquals(s.cu.total, 256 * MiB);
});

test("shim: SPILLWAY_LOG=debug explains each decision", async () => {
  const r = await runProg(["init", "a:drv:40M", "a:drv:100M", "f:drv:1"], { env: { ...base, SPILLWAY_LOG: "debug" } });
  assertMatch(r.stderr, /alloc 40\.0 MiB on device 0 \(#0\) -> fits the budget/);
  assertMatch(r.stderr, /alloc 100\.0 MiB on device 0 \(#1\) -> over the budget: 60\.0 MiB VRAM \+ 40\.0 MiB host \(vmm\)/);
  assertMatch(r.stderr, /free 0x[0-9a-f]+: 60\.0 MiB VRAM \+ 40\.0 MiB host \(vmm\) returned/);
  assert(!/error/.test(r.stderr), r.stderr);
});
