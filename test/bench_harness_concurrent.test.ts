// Issue 22: the harness's `concurrent` command (bench/harness/concurrent.ts), which bench/gpu/entry.sh
// runs before a matrix with SPILLWAY_BENCH_CONCURRENT=1, so a hybrid run records the machine's own
// PCIe read rate beside its results. Runs against the fake libcuda (test/hwbench_fake_libcuda.c);
// the real figures come from the GPU machine.
import { test } from "node:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { concurrentCommand } from "../bench/harness/concurrent.ts";
import { hasProgram } from "../core/native_build.ts";
import { buildC } from "./_native.ts";
import { withTempDir } from "./_tmp.ts";
import { assertEquals, assertGreater, assertRejects } from "./_assert.ts";

test("harness concurrent: writes the probe's figures to OUT/concurrent.json and the CPU loops to OUT/cpu_ram.json; a missing driver or a bad size fails and writes nothing", { skip: hasProgram("gcc") ? false : "gcc missing" }, async () => {
  const fake = buildC("libfakecuda.so", ["test/hwbench_fake_libcuda.c"], ["-shared", "-fPIC"]);
  await withTempDir("harness-conc-", async (dir) => {
    const out = join(dir, "out");
    const opts = { out, work: join(dir, "work"), libcuda: fake, bytes: String(8 << 20), seconds: "0.1" };
    assertEquals(await concurrentCommand(opts), 0);
    const r = JSON.parse(readFileSync(join(out, "concurrent.json"), "utf8"));
    assertEquals(r.cpuBytes, 8 << 20);
    for (const k of ["cpuAloneGBps", "gpuAloneGBps", "cpuTogetherGBps", "gpuTogetherGBps"]) assertGreater(r[k].min, 0);
    // the CPU's two loops beside it, over the same buffer size
    const cpu = JSON.parse(readFileSync(join(out, "cpu_ram.json"), "utf8"));
    assertEquals(cpu.bytes, 8 << 20);
    assertGreater(cpu.ramGBps.min, 0);
    assertGreater(cpu.simpleGBps.min, 0);

    const bad = join(dir, "bad");
    await assertRejects(() => concurrentCommand({ ...opts, out: bad, libcuda: join(dir, "no-libcuda.so") }));
    await assertRejects(() => concurrentCommand({ ...opts, out: bad, bytes: "-1" }), Error, "--bytes must be a positive number");
    assertEquals(existsSync(join(bad, "concurrent.json")), false);
    assertEquals(existsSync(join(bad, "cpu_ram.json")), false);
  });
});
