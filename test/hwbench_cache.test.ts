// The measured-profile cache (hardware.json) and the autotune cache (autotune.json): keys, matching, bad files.
import { test } from "node:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CacheEntry, findBenchEntry, machineKey, type MachineIds, readCache, writeCacheEntry } from "../engine/hardware/measure/machine_cache.ts";
import { autotuneKey, findAutotune, readAutotune, writeAutotune, type AutotuneEntry } from "../engine/autotune/outcome_cache.ts";
import { HardwareProbeError } from "../core/errors.ts";
import type { HardwareProfile, Plan } from "../core/types.ts";
import { assert, assertEquals, assertNotEquals, assertThrows } from "./_assert.ts";

const host = { hostname: "box", cpuName: "Xeon", ramGiB: 126 };
const ids = (gpuName: string, driver: string, over: Partial<MachineIds> = {}): MachineIds => ({ gpuName, driver, ...host, ...over });

function profile(name: string, h2d: number): HardwareProfile {
  return {
    name,
    source: "bench",
    gpu: {
      name, vramBytes: 1, freeVramBytes: 1, vramGBps: 4000, fp16Tflops: 900, pcie: { gen: 5, width: 16 },
      h2dGBps: h2d, d2hGBps: h2d, zeroCopyGBps: 50,
    },
    host: { ramBytes: 1, availableRamBytes: 1, ramGBps: 70, cpuCores: 16, cpuGflops: 600 },
    disk: { readGBps: 2 },
  };
}
function entry(i: MachineIds, at: string, h2d: number): CacheEntry {
  return { key: machineKey(i), ids: i, measuredAt: at, profile: profile(i.gpuName, h2d) };
}

test("hardware cache: keyed by GPU, driver and host; newest entry is the top-level profile", () => {
  const dir = mkdtempSync(join(tmpdir(), "hwbench-cache-"));
  try {
    const file = join(dir, "hardware.json");
    assertEquals(readCache(file).machines, {}, "missing file is an empty cache");
    const a = ids("NVIDIA H200", "580.159.04");
    const b = ids("NVIDIA H200", "590.10");
    writeCacheEntry(entry(a, "2026-01-01T00:00:00.000Z", 55), file);
    writeCacheEntry(entry(b, "2026-02-01T00:00:00.000Z", 54), file);
    writeCacheEntry(entry(ids("NVIDIA H200", "580.159.04", { hostname: "other" }), "2026-03-01T00:00:00.000Z", 20), file);
    assertEquals(Object.keys(readCache(file).machines).length, 3);
    assertNotEquals(machineKey(a), machineKey(b));
    // The file's top level is a HardwareProfile: the latest measurement, with its machine named.
    const top = JSON.parse(readFileSync(file, "utf8"));
    assertEquals(top.source, "bench");
    assertEquals(top.gpu.h2dGBps, 20);
    assertEquals(top.machine.ids.hostname, "other");
    // Lookup: host must match; GPU and driver where given.
    assertEquals(findBenchEntry({ gpuName: "NVIDIA H200", driver: "580.159.04" }, file, host)!.profile.gpu!.h2dGBps, 55);
    assertEquals(findBenchEntry({ gpuName: "NVIDIA H200", driver: "590.10" }, file, host)!.profile.gpu!.h2dGBps, 54);
    assertEquals(findBenchEntry({ gpuName: "NVIDIA H200" }, file, host)!.measuredAt, "2026-02-01T00:00:00.000Z", "newest of this host");
    assertEquals(findBenchEntry({ gpuName: "NVIDIA H100" }, file, host), null);
    assertEquals(findBenchEntry({ gpuName: "NVIDIA H200", driver: "999" }, file, host), null, "driver upgrade measures afresh");
    assertEquals(findBenchEntry({}, file, { ...host, ramGiB: 64 }), null, "other RAM is another machine");
    // Re-measuring the same machine replaces its entry.
    writeCacheEntry(entry(a, "2026-04-01T00:00:00.000Z", 56), file);
    assertEquals(Object.keys(readCache(file).machines).length, 3);
    assertEquals(findBenchEntry({ gpuName: "NVIDIA H200", driver: "580.159.04" }, file, host)!.profile.gpu!.h2dGBps, 56);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("hardware cache: bad files are named, a bare profile has no machines", () => {
  const dir = mkdtempSync(join(tmpdir(), "hwbench-cache-"));
  try {
    const file = join(dir, "hardware.json");
    writeFileSync(file, "{ not json");
    assertThrows(() => readCache(file), HardwareProbeError, `${file}: not valid JSON`);
    writeFileSync(file, JSON.stringify({ machines: { k: { ids: {} } } }));
    assertThrows(() => readCache(file), HardwareProbeError, "machines[\"k\"] needs ids, measuredAt and profile");
    writeFileSync(file, JSON.stringify(profile("bare", 1)));
    assertEquals(readCache(file).machines, {});
    assertEquals(findBenchEntry({}, file, host), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function plan(over: Partial<Plan> = {}, fitting = ["a", "b"]): Plan {
  const cand = (id: string, fits: boolean) => ({ id, fits }) as unknown as Plan["candidates"][number];
  return {
    version: 1,
    model: { path: "/m/q.gguf", architecture: "qwen3moe", quantization: "Q8_0", bytes: 123 },
    runtime: "llama.cpp",
    hardware: { name: "bench: NVIDIA H200", source: "bench" },
    workload: { objective: "chat", promptTokens: 512, generatedTokens: 512 },
    candidates: [...fitting.map((id) => cand(id, true)), cand("all-vram", false)],
    chosen: "a",
    reason: "",
    settings: {} as Plan["settings"],
    predicted: { prefillTps: 1, decodeTps: 1, totalSeconds: 1 },
    memory: { vram: 0, host_mapped: 0, host_cpu: 0, disk: 0 },
    ...over,
  };
}

test("autotune cache: key covers model, hardware, workload and the fitting candidates", () => {
  const k = autotuneKey(plan());
  assertEquals(autotuneKey(plan()), k);
  assertEquals(autotuneKey(plan({}, ["b", "a"])), k, "order of candidates does not matter");
  assertNotEquals(autotuneKey(plan({ workload: { objective: "rag", promptTokens: 4096, generatedTokens: 128 } })), k);
  assertNotEquals(autotuneKey(plan({ model: { path: "/m/other.gguf", architecture: "x", quantization: "Q8_0", bytes: 123 } })), k);
  assertNotEquals(autotuneKey(plan({ hardware: { name: "h200-12gib-free", source: "builtin" } })), k);
  assertNotEquals(autotuneKey(plan({}, ["a"])), k, "less free VRAM: other candidates fit");
  const dir = mkdtempSync(join(tmpdir(), "hwbench-at-"));
  try {
    const file = join(dir, "autotune.json");
    assertEquals(findAutotune(plan(), file), null);
    const e = { key: k, chosen: "b", rows: [] } as unknown as AutotuneEntry;
    writeAutotune(e, file);
    assertEquals(findAutotune(plan(), file)!.chosen, "b");
    assertEquals(findAutotune(plan({}, ["a"]), file), null);
    writeFileSync(file, "[]");
    assertThrows(() => readAutotune(file), HardwareProbeError, "not a spillway autotune cache");
    assert(true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
