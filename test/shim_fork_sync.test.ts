// Issue 18 items 7 and 8 under the fake CUDA driver: forked children keep none of the spill buffers
// (pool DMA-BUF mapping and fd, mapped pinned memory), and frees of host-backed memory wait for the
// device the allocation belongs to (two fake devices), not the caller's current one, and never unmap
// memory while the stream it was freed on is capturing a graph.
import { test } from "node:test";
import { assertEquals } from "./_assert.ts";
import { MiB, ofOp, runProg } from "./shim_helpers.ts";

const base = { FAKECUDA_VRAM: "256M", SPILLWAY_VRAM_BUDGET: "32M", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" };

test("shim fork (issue 18 item 7): a forked child inherits neither the pool buffer's mapping nor its fd", async () => {
  const r = await runProg(["init", "a:drv:64M", "w:0:64M", "forkchk:0", "w:0:64M", "f:drv:0", "s"], {
    prog: "vmmprog",
    kmod: true,
    env: { ...base, SPILLWAY_BACKING: "kmod" },
  });
  assertEquals(ofOp(r, "a")[0].r, 0);
  const [child] = ofOp(r, "forkchk");
  assertEquals([child.childMapped, child.childDmabufFds], [false, 0]);
  assertEquals(ofOp(r, "w").map((l) => l.ok), [true, true], "the parent's buffer is untouched by the fork");
  assertEquals(ofOp(r, "s")[0].fake.live, 0);
});

test("shim fork (issue 18 item 7): mapped pinned memory is not inherited by a forked child", async () => {
  const r = await runProg(["init", "a:drv:64M", "w:0:64M", "forkchk:0", "w:0:64M", "f:drv:0"], {
    prog: "vmmprog",
    env: { ...base, SPILLWAY_BACKING: "mapped" },
  });
  assertEquals(ofOp(r, "forkchk")[0].childMapped, false);
  assertEquals(ofOp(r, "w").map((l) => l.ok), [true, true]);
});

test("shim free (issue 18 item 8): freeing device 1's host-backed memory waits for device 1, with device 0 or no context current", async () => {
  const r = await runProg(["init", "ctx:1", "a:drv:100M", "a:drv:100M", "ctx:0", "f:drv:0", "s", "nctx", "f:drv:1", "s"], {
    prog: "vmmprog",
    env: { ...base, FAKECUDA_DEVICES: "2" },
  });
  assertEquals(ofOp(r, "f").map((l) => l.r), [0, 0]);
  const [afterFirst, afterSecond] = ofOp(r, "s");
  assertEquals(afterFirst.syncs, [0, 1], "device 1 synchronized, device 0 not");
  assertEquals(afterSecond.syncs, [0, 2], "with no context current, device 1 still synchronized");
  assertEquals([afterSecond.fake.hostVmm, afterSecond.fake.reservations], [0, 0]);
});

test("shim free (issue 18 item 8): a stream-ordered free during stream capture is deferred until the capture ends", async () => {
  const r = await runProg(["init", "aa:100M", "cap:1", "fa:0", "s", "cap:0", "aa:1M", "s"], { prog: "vmmprog", env: base });
  assertEquals(ofOp(r, "fa")[0].r, 0);
  const [during, after] = ofOp(r, "s");
  assertEquals(during.capturesInvalidated, 0, "the capturing stream was not synchronized");
  assertEquals(during.fake.hostVmm, 100 * MiB - 32 * MiB, "the memory stays mapped while the graph may read it");
  assertEquals([after.fake.hostVmm, after.fake.reservations, after.shim.frees], [0, 0, 1]);
});
