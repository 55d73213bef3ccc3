// The kernel-module backing against a stand-in /dev/spillway (fakekmod.c answers the uapi ioctls
// with a memfd for the DMA-BUF): ALLOC, mmap, cuMemHostRegister, and back; the pool limit and a
// module speaking another uapi major version.
import { test } from "node:test";
import { assertEquals, assertMatch } from "./_assert.ts";
import { MiB, ofOp, runProg } from "./shim_helpers.ts";

const base = { FAKECUDA_VRAM: "256M", SPILLWAY_VRAM_BUDGET: "32M", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" };

test("shim kmod: auto splits through VMM and places whole-host allocations in the module's pool", async () => {
  const r = await runProg(["init", "a:drv:100M", "a:drv:50M", "w:1:50M", "s", "f:drv:1", "f:drv:0", "s"], { kmod: true, env: base });
  assertEquals(ofOp(r, "a").map((l) => l.r), [0, 0]);
  assertEquals(ofOp(r, "w")[0].ok, true, "the registered pool buffer is the allocation's memory");
  const [s, after] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm, s.fake.registered], [32 * MiB, 68 * MiB, 50 * MiB]);
  assertEquals([s.shim.tiers[0].bytes, s.shim.tiers[1].bytes, s.shim.tiers[3].bytes], [32 * MiB, 68 * MiB, 50 * MiB]);
  assertEquals([after.fake.registered, after.fake.hostVmm, after.fake.live], [0, 0, 0]);
  assertEquals(after.shim.tiers[3].bytes, 0);
});

test("shim kmod: SPILLWAY_BACKING=kmod places whole allocations, rounded to the module's 2 MiB chunks", async () => {
  const r = await runProg(["init", "a:rt:101M", "s", "f:rt:0", "s"], { kmod: true, env: { ...base, SPILLWAY_BACKING: "kmod" } });
  const [s, after] = ofOp(r, "s");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm, s.fake.registered], [0, 0, 102 * MiB]);
  assertEquals([s.shim.tiers[3].bytes, s.shim.splits], [102 * MiB, 0]);
  assertEquals([after.fake.registered, after.shim.frees], [0, 1]);
});

test("shim kmod: a full pool answers out of memory and leaves nothing registered", async () => {
  const r = await runProg(["init", "a:drv:100M", "a:drv:40M", "s"], {
    kmod: true,
    env: { ...base, SPILLWAY_BACKING: "kmod", FAKEKMOD_LIMIT: String(64 * MiB) },
  });
  assertEquals(ofOp(r, "a").map((l) => l.r), [2, 0]);
  const [s] = ofOp(r, "s");
  assertEquals([s.fake.registered, s.shim.hostFailures, s.shim.failures, s.shim.tiers[3].bytes], [40 * MiB, 1, 1, 40 * MiB]);
});

test("shim kmod: a module of another uapi major version is not used", async () => {
  let r = await runProg(["init", "a:drv:100M", "s"], { kmod: true, env: { ...base, SPILLWAY_BACKING: "kmod", FAKEKMOD_MAJOR: "2" } });
  assertEquals(ofOp(r, "a")[0].r, 2);
  assertMatch(r.stderr, /module speaks uapi version 0x20000, the shim 0x10000: not using it/);
  r = await runProg(["init", "a:drv:100M", "s"], { kmod: true, env: { ...base, SPILLWAY_VRAM_BUDGET: "0", FAKEKMOD_MAJOR: "2" } });
  const [s] = ofOp(r, "s");
  assertEquals([s.fake.registered, s.fake.hostVmm], [0, 100 * MiB], "auto falls back to VMM host memory");
});

test("shim kmod: without a device node, SPILLWAY_BACKING=kmod spills fail with a clear error", async () => {
  const r = await runProg(["init", "a:drv:100M", "a:drv:10M"], { env: { ...base, SPILLWAY_BACKING: "kmod", SPILLWAY_KMOD_DEVICE: "/nonexistent/spillway" } });
  assertEquals(ofOp(r, "a").map((l) => l.r), [2, 0]);
  assertMatch(r.stderr, /SPILLWAY_BACKING=kmod but \/nonexistent\/spillway cannot be opened/);
});
