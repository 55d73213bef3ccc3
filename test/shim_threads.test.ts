// 16 threads x 10,000 random allocations and frees through the driver and runtime APIs, sync and
// stream-ordered, across VRAM, splits and host: the accounting of the shim and of the driver agree
// and everything comes back.
import { test } from "node:test";
import { assert, assertEquals, assertGreater } from "./_assert.ts";
import { ofOp, runProg } from "./shim_helpers.ts";

test("shim: 16 threads x 10,000 random allocations and frees stay consistent", async () => {
  const seed = 1 + Math.floor(Math.random() * 1000);
  const r = await runProg(["init", `t:16:10000:${seed}`, "s"], {
    env: { FAKECUDA_VRAM: "512M", SPILLWAY_VRAM_BUDGET: "64M", SPILLWAY_MIN_SPILL: "4M", SPILLWAY_HOST_LIMIT: "2G" },
  });
  assertEquals(r.status, 0, `seed ${seed}: ${r.stderr}`);
  const [t] = ofOp(r, "t");
  const [s] = ofOp(r, "s");
  assertEquals([t.failures, t.badFrees], [0, 0], `seed ${seed}`);
  assertEquals(t.allocs, t.frees);
  assertGreater(t.allocs, 70_000);
  // The shim saw each allocation exactly once and took every one back.
  assertEquals([s.shim.allocs, s.shim.frees, s.shim.failures, s.shim.passthroughFrees], [t.allocs, t.frees, 0, 0]);
  assertEquals(s.shim.tiers.map((x: { bytes: number; allocs: number }) => [x.bytes, x.allocs]), [[0, 0], [0, 0], [0, 0], [0, 0]]);
  assertGreater(s.shim.splits, 0);
  assertGreater(s.shim.spills, s.shim.splits);
  assert(s.shim.tiers[0].peak > 64 * 2 ** 20, "small allocations went to VRAM past the budget (into the reserve)");
  assertEquals([s.fake.vramUsed, s.fake.hostVmm, s.fake.pinned, s.fake.live, s.fake.reservations, s.fake.mappings], [0, 0, 0, 0, 0, 0]);
});
