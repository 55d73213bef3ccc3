// Issue 22: the GPU entry's opt-in concurrent probe (SPILLWAY_BENCH_CONCURRENT=1 in
// bench/gpu/entry.sh), so a hybrid run records the machine's own PCIe read rate beside its results.
// Runs entry.sh's concurrent_probe step against the fake libcuda (test/hwbench_fake_libcuda.c);
// the real figures come from the GPU machine.
import { test } from "node:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConcurrentOutput } from "../engine/hardware/measure/concurrent.ts";
import { hasProgram } from "../core/native_build.ts";
import { buildC, ROOT } from "./_native.ts";
import { assert, assertEquals, assertGreater } from "./_assert.ts";

const ENTRY = join(ROOT, "bench", "gpu", "entry.sh");

function probe(work: string, libcuda: string) {
  return spawnSync("bash", [ENTRY, "__fn", "concurrent_probe"], {
    encoding: "utf8",
    env: {
      ...process.env,
      SPILLWAY_BENCH_WORK: work,
      OUT: join(work, "out"),
      SPILLWAY_CONCURRENT_LIBCUDA: libcuda,
      SPILLWAY_CONCURRENT_BYTES: String(8 << 20),
      SPILLWAY_CONCURRENT_SECONDS: "0.1",
    },
  });
}

test("entry.sh concurrent_probe: writes the probe's JSON to the results folder; a missing driver fails and writes nothing", { skip: hasProgram("gcc") ? false : "gcc missing" }, () => {
  const fake = buildC("libfakecuda.so", ["test/hwbench_fake_libcuda.c"], ["-shared", "-fPIC"]);
  const work = mkdtempSync(join(tmpdir(), "entry-conc-"));
  try {
    const r = probe(work, fake);
    assertEquals(r.status, 0, r.stderr);
    const file = join(work, "out", "concurrent.json");
    const m = parseConcurrentOutput(readFileSync(file, "utf8"));
    assertEquals(m.cpuBytes, 8 << 20);
    for (const x of [m.cpuAloneGBps, m.gpuAloneGBps, m.cpuTogetherGBps, m.gpuTogetherGBps]) assertGreater(x.min, 0);

    const bad = mkdtempSync(join(tmpdir(), "entry-conc-bad-"));
    try {
      const b = probe(bad, join(bad, "no-libcuda.so"));
      assert(b.status !== 0, "a missing driver must fail the step");
      assert(!existsSync(join(bad, "out", "concurrent.json")), "no concurrent.json from a failed probe");
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
