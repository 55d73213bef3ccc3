// The program's own CUDA VMM calls (cuMemCreate and friends), managed and pitched allocations under
// the shim with the fake CUDA driver (issue 16 items 1, 3, 4, 5): per-handle placement with exact
// bytes, release and unmap giving memory back, a spilled handle mapped into the program's own range,
// granularity, lookups, bad input answered as CUDA answers it, managed memory never oversubscribed.
import { test } from "node:test";
import { assertEquals, assertMatch } from "./_assert.ts";
import { MiB, ofOp, runProg } from "./shim_helpers.ts";

const GiB = 1024 * MiB;
const base = { FAKECUDA_VRAM: "256M", SPILLWAY_VRAM_BUDGET: "100M", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" };
const vmm = (ops: string[], env: Record<string, string> = {}) => runProg(ops, { prog: "vmmprog", env: { ...base, ...env } });

test("shim vmm: a device cuMemCreate over the budget is created in host memory, mapped into the program's range and counted; release + unmap give it back", async () => {
  const r = await vmm([
    "init", "vc:dev0:64M", "vc:dev0:64M", "va:128M", "vm:0:0:0", "vm:0:64M:1", "vs:0:0:128M", "vw:0:0:128M", "s",
    "vr:0", "vr:1", "s", "vu:0:0:64M", "s", "vu:0:64M:64M", "vf:0", "s",
  ]);
  assertEquals(r.status, 0, r.stderr);
  assertEquals(ofOp(r, "vc").map((l) => l.r), [0, 0]);
  assertEquals([...ofOp(r, "vm"), ...ofOp(r, "vs")].map((l) => l.r), [0, 0, 0]);
  assertEquals(ofOp(r, "vw")[0].ok, true, "the program's range, half VRAM and half host memory, is usable end to end");
  const [mapped, released, halfUnmapped, gone] = ofOp(r, "s");
  // 64M fits the 100M budget: VRAM; the second 64M would not: host memory.
  assertEquals([mapped.fake.vramUsed, mapped.fake.hostVmm], [64 * MiB, 64 * MiB]);
  assertEquals(mapped.shim.tiers.map((t: { bytes: number }) => t.bytes), [64 * MiB, 64 * MiB, 0, 0]);
  assertEquals([mapped.shim.allocs, mapped.shim.spills], [2, 1]);
  // Reported free memory: VRAM left plus what is left of the 1G host limit.
  assertEquals(mapped.cu, { r: 0, free: 256 * MiB - 64 * MiB + GiB - 64 * MiB, total: 256 * MiB + GiB });
  // Released handles whose memory is still mapped stay counted, as the driver keeps them.
  assertEquals([released.fake.vramUsed, released.fake.hostVmm, released.shim.frees], [64 * MiB, 64 * MiB, 0]);
  assertEquals([halfUnmapped.fake.vramUsed, halfUnmapped.shim.tiers[0].bytes, halfUnmapped.shim.tiers[1].bytes], [0, 0, 64 * MiB]);
  assertEquals([gone.fake.vramUsed, gone.fake.hostVmm, gone.fake.handles, gone.fake.reservations, gone.shim.frees], [0, 0, 0, 0, 2]);
  assertEquals(gone.shim.tiers.map((t: { bytes: number }) => t.bytes), [0, 0, 0, 0]);
  assertEquals(gone.cu, { r: 0, free: 256 * MiB + GiB, total: 256 * MiB + GiB });
});

test("shim vmm: the device refusing a cuMemCreate within the budget gets host memory; retained handles keep it alive", async () => {
  const r = await vmm(
    ["init", "a:drv:200M", "vc:dev0:64M", "va:64M", "vm:0:0:0", "vt:0:0", "vr:0", "vu:0:0:64M", "s", "vr:1", "s", "vf:0", "f:drv:0"],
    { SPILLWAY_VRAM_BUDGET: "1G" },
  );
  assertEquals(ofOp(r, "vc")[0].r, 0);
  assertEquals(ofOp(r, "vt")[0].r, 0);
  const [retained, after] = ofOp(r, "s");
  assertEquals([retained.fake.hostVmm, retained.shim.tiers[1].bytes], [64 * MiB, 64 * MiB], "the retained handle holds it");
  assertEquals([after.fake.hostVmm, after.shim.tiers[1].bytes, after.fake.handles], [0, 0, 0]);
});

test("shim vmm: lookups through cuGetProcAddress and dlsym answer the cuMemCreate hook", async () => {
  const r = await vmm(["init", "vcg:dev0:200M", "vcd:dev0:2M", "s"]);
  assertEquals(ofOp(r, "vc").map((l) => [l.r, l.hooked]), [[0, true], [0, true]]);
  assertEquals(ofOp(r, "s")[0].fake.hostVmm, 200 * MiB, "the 200M handle found through cuGetProcAddress was placed");
});

test("shim vmm: granularity of a device location covers the host one; bad input is answered as CUDA answers it", async () => {
  let r = await vmm(["init", "vg:dev0", "vg:host", "vg:invalid"], { FAKECUDA_HOST_GRAN: "4M" });
  assertEquals(ofOp(r, "vg").map((l) => [l.r, l.g]), [[0, 4 * MiB], [0, 4 * MiB], [1, 0]]);
  r = await vmm(["init", "vc:invalid:2M", "vc:dev0:3M", "vc:dev0:200M", "vr:2", "vr:2", "va:2M", "vu:0:0:2M", "vf:0", "vr:0", "s"]);
  // wrong location type, size not a multiple of the granularity: invalid value; release of the 200M
  // host-placed handle, then a double release: invalid value; unmapping what is not mapped: invalid value.
  assertEquals(ofOp(r, "vc").map((l) => l.r), [1, 1, 0]);
  assertEquals(ofOp(r, "vr").map((l) => l.r), [0, 1, 1]);
  assertEquals([ofOp(r, "vu")[0].r, ofOp(r, "vf")[0].r], [1, 0]);
  const [s] = ofOp(r, "s");
  assertEquals([s.fake.hostVmm, s.fake.vramUsed, s.shim.frees, s.shim.failures], [0, 0, 1, 1], "the invalid location passed through uncounted");
  assertEquals(s.shim.tiers.map((t: { bytes: number }) => t.bytes), [0, 0, 0, 0]);
});

test("shim vmm: a host location the program asked for, and imported handles, pass through uncounted", async () => {
  const r = await vmm(["init", "vc:hostnuma:8M:1", "vx:0", "vi:0", "vr:1", "vr:0", "s"]);
  assertEquals([...ofOp(r, "vc"), ...ofOp(r, "vx"), ...ofOp(r, "vi"), ...ofOp(r, "vr")].map((l) => l.r), [0, 0, 0, 0, 0]);
  const [s] = ofOp(r, "s");
  assertEquals([s.shim.allocs, s.fake.hostVmm, s.fake.handles], [0, 0, 0]);
});

test("shim vmm: where host memory refuses shareable handle types, the spilled handle is made without them", async () => {
  const r = await vmm(["init", "vc:dev0:200M:1", "s", "vx:0", "vr:0", "s"], { FAKECUDA_HOST_NO_SHAREABLE: "1" });
  assertEquals(ofOp(r, "vc")[0].r, 0);
  assertEquals(ofOp(r, "vx")[0].r, 1, "exporting it answers the driver's error");
  const [s, after] = ofOp(r, "s");
  assertEquals([s.fake.hostVmm, after.fake.hostVmm], [200 * MiB, 0]);
});

test("shim vmm: where host VMM is unsupported, cuMemCreate stays on the device and reports stop adding host memory", async () => {
  const r = await vmm(["init", "vc:dev0:200M", "vc:dev0:100M", "s"], { FAKECUDA_NO_HOST_VMM: "1" });
  assertEquals(ofOp(r, "vc").map((l) => l.r), [0, 2], "the device's own answer: 200M fit, 100M more did not");
  const [s] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm], [200 * MiB, 0]);
  assertEquals(s.shim.flags & 2, 2);
  assertEquals(s.cu, { r: 0, free: 56 * MiB, total: 256 * MiB }, "no host memory reported that cuMemCreate could not get");
  assertMatch(r.stderr, /host allocations through CUDA VMM are not supported here/);
});

test("shim managed: within the budget passed through; beyond it advised to host memory; never oversubscribed", async () => {
  const ops = ["init", "m:drv:80M", "m:rt:200M", "w:1:200M", "s", "f:drv:0", "f:rt:1", "s"];
  const r = await vmm(ops);
  assertEquals(ofOp(r, "m").map((l) => l.r), [0, 0]);
  assertEquals(ofOp(r, "w")[0].ok, true);
  const [s, after] = ofOp(r, "s");
  assertEquals([s.fake.managedDev, s.fake.managedHost, s.fake.oversubscribed], [80 * MiB, 200 * MiB, 0]);
  assertEquals(s.shim.tiers.map((t: { bytes: number }) => t.bytes), [80 * MiB, 0, 200 * MiB, 0]);
  assertEquals([after.fake.managedDev, after.fake.managedHost, after.fake.live, after.shim.frees], [0, 0, 0, 2]);
  assertEquals(after.shim.tiers.map((t: { bytes: number }) => t.bytes), [0, 0, 0, 0]);
  // Without the shim the same program oversubscribes the 256M device.
  const bare = await runProg(ops, { prog: "vmmprog", shim: false, env: base });
  assertEquals(ofOp(bare, "s")[0].fake.oversubscribed, 1);
});

test("shim managed: if the host advice cannot be given, a managed allocation over the budget is answered out of memory", async () => {
  const r = await vmm(["init", "m:drv:200M", "m:rt:200M", "m:drv:50M", "s"], { FAKECUDA_NO_ADVISE: "1" });
  assertEquals(ofOp(r, "m").map((l) => l.r), [2, 2, 0]);
  const [s] = ofOp(r, "s");
  assertEquals([s.fake.managedDev, s.fake.live, s.fake.oversubscribed, s.shim.failures], [50 * MiB, 1, 0, 2]);
  assertMatch(r.stderr, /rather than oversubscribing the GPU/);
});

test("shim pitched: cuMemAllocPitch, cudaMallocPitch and cudaMalloc3D are placed and counted like linear allocations", async () => {
  const r = await vmm(["init", "p:drv:1000:100K", "p:rt:4096:1000", "p:3d:100:200K", "w:2:100M", "s", "f:drv:0", "f:rt:1", "f:rt:2", "s", "p:drv:0:10"]);
  const p = ofOp(r, "p");
  assertEquals(p.slice(0, 3).map((l) => [l.r, l.pitch]), [[0, 1024], [0, 4096], [0, 512]]);
  assertEquals(p[3].r, 1, "zero width: invalid value, from CUDA");
  const [s, after] = ofOp(r, "s");
  const a = 1024 * 100 * 1024, b = 4096 * 1000, c = 512 * 400 * 1024;
  assertEquals(s.fake.vramUsed + s.fake.hostVmm, 100 * MiB + Math.ceil((a + b + c - 100 * MiB) / (2 * MiB)) * 2 * MiB);
  assertEquals(s.shim.allocs, 3);
  assertEquals(ofOp(r, "w")[0].ok, true);
  assertEquals([after.fake.vramUsed, after.fake.hostVmm, after.shim.frees], [0, 0, 3]);
});

test("shim vmm: small handles past the budget (a growing pool's pages) go to host memory, below the min spill size too", async () => {
  const ops = ["init", ...Array.from({ length: 8 }, () => "vc:dev0:20M"), "s"];
  const r = await vmm(ops, { SPILLWAY_MIN_SPILL: "32M", SPILLWAY_VRAM_BUDGET: "64M" });
  assertEquals(ofOp(r, "vc").map((l) => l.r), Array(8).fill(0));
  const [s] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm], [60 * MiB, 100 * MiB]);
});

test("shim vmm: a framework's device props (RDMA flag, shareable handle type) still get host memory past the budget", async () => {
  // Driver 580 refused host-located handles with the props PyTorch's expandable segments and XLA pass;
  // the shim makes the host twin from a fresh prop. The fake refuses such flags on host locations too.
  const r = await vmm(["init", "vc:dev0:64M:1:1", "vc:dev0:64M:1:1", "va:128M", "vm:0:0:0", "vm:0:64M:1", "vs:0:0:128M", "vw:0:0:128M", "s"]);
  assertEquals(ofOp(r, "vc").map((l) => l.r), [0, 0]);
  assertEquals(ofOp(r, "vw")[0].ok, true);
  const [s] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm, s.shim.flags & 2], [64 * MiB, 64 * MiB, 0]);
});

test("shim vmm: one handle larger than the reserve and the budget left is split: VRAM head + host tail under one handle", async () => {
  const env = { SPILLWAY_RESERVE: "16M" };
  // 40M already in VRAM; the 200M handle gets the 60M left of the budget as its head, 140M host tail.
  const r = await vmm([
    "init", "vc:dev0:40M", "vc:dev0:200M:1:1", "va:200M", "vm:0:0:1", "vs:0:0:200M", "vw:0:0:200M", "s",
    "vt:0:150M", "vx:1", "vr:1", "vr:2", "s", "vu:0:0:200M", "vf:0", "vr:0", "s", "vr:1",
  ], env);
  assertEquals(ofOp(r, "vc").map((l) => l.r), [0, 0]);
  assertEquals([ofOp(r, "vm")[0].r, ofOp(r, "vs")[0].r, ofOp(r, "vt")[0].r], [0, 0, 0]);
  assertEquals(ofOp(r, "vw")[0].ok, true, "one contiguous range: VRAM head, host tail");
  assertEquals(ofOp(r, "vx")[0].r, 801, "a split handle cannot be exported");
  const [mapped, released, gone] = ofOp(r, "s");
  assertEquals([mapped.fake.vramUsed, mapped.fake.hostVmm], [100 * MiB, 140 * MiB]);
  assertEquals(mapped.shim.tiers.map((t: { bytes: number }) => t.bytes), [100 * MiB, 140 * MiB, 0, 0]);
  assertEquals([released.fake.hostVmm, released.shim.tiers[1].bytes], [140 * MiB, 140 * MiB], "still mapped: still counted");
  assertEquals([gone.fake.vramUsed, gone.fake.hostVmm, gone.fake.handles, gone.shim.frees], [0, 0, 0, 2]);
  assertEquals(ofOp(r, "vr").map((l) => l.r), [0, 0, 0, 1], "the retained reference, the handle, the 40M one; then a double release");
});

test("shim vmm: a cuMemCreate from a thread with no context current is still placed and counted (the device's primary context)", async () => {
  const r = await vmm(["init", "nctx", "vc:dev0:200M", "s", "vr:0", "ctx:0", "s"]);
  assertEquals(ofOp(r, "vc")[0].r, 0);
  const [s, after] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm, s.shim.allocs], [0, 200 * MiB, 1]);
  assertEquals([after.fake.hostVmm, after.shim.frees], [0, 1]);
});

test("shim vmm: a split handle's mapping is unmapped in its two parts where the driver takes one mapping per call", async () => {
  const r = await vmm(["init", "vc:dev0:200M", "va:200M", "vm:0:0:0", "vs:0:0:200M", "vr:0", "vu:0:0:200M", "vf:0", "s"], {
    SPILLWAY_RESERVE: "16M",
    FAKECUDA_UNMAP_ONE: "1",
  });
  assertEquals([...ofOp(r, "vu"), ...ofOp(r, "vf")].map((l) => l.r), [0, 0]);
  const [s] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm, s.fake.mappings, s.shim.frees], [0, 0, 0, 1]);
});
