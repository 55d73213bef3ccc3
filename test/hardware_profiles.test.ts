import { test } from "node:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertGreater, assertMatch, assertThrows } from "./_assert.ts";
import {
  applyOverrides,
  getProfile,
  parseCpuinfo,
  parseMeminfo,
  parseNvidiaSmi,
  pcieBandwidth,
  probeHardware,
  probeHost,
  profileNames,
  resolveHardware,
} from "../engine/hardware/mod.ts";
import { HardwareProbeError } from "../core/errors.ts";

const GiB = 2 ** 30;

test("built-in profiles: the named machines with their numbers", () => {
  for (const n of ["rtx-5070-12gb", "rtx-4090-24gb", "h200-gpu-machine", "h200-12gib-free", "cpu-only"]) assert(profileNames().includes(n), n);
  const r = getProfile("rtx-5070-12gb")!;
  assertEquals([r.gpu!.vramBytes, r.gpu!.vramGBps, r.gpu!.pcie, r.host.ramBytes, r.host.cpuCores], [12 * GiB, 672, { gen: 4, width: 16 }, 64 * GiB, 8]);
  assertEquals([r.gpu!.h2dGBps, r.gpu!.zeroCopyGBps, r.host.ramGBps], [25, 22, 60]);
  assertEquals(getProfile("rtx-4090-24gb")!.gpu!.vramGBps, 1008);
  const h = getProfile("h200-gpu-machine")!;
  assertEquals([h.gpu!.vramGBps, h.gpu!.h2dGBps, h.gpu!.d2hGBps, h.gpu!.zeroCopyGBps, h.host.ramGBps, h.host.cpuCores], [4485, 55.4, 55.3, 51.3, 69, 16]);
  assertEquals(getProfile("h200-12gib-free")!.gpu!.freeVramBytes, 12 * GiB);
  // Copies: mutating one does not change the built-in.
  h.gpu!.vramGBps = 1;
  assertEquals(getProfile("h200-gpu-machine")!.gpu!.vramGBps, 4485);
  assertEquals(getProfile("nope"), null);
});

test("/proc parsers and nvidia-smi CSV", () => {
  assertEquals(parseMeminfo("MemTotal:       16384000 kB\nMemFree:  1 kB\nMemAvailable:    8192000 kB\n"), {
    ramBytes: 16384000 * 1024,
    availableRamBytes: 8192000 * 1024,
  });
  const cpu = "processor\t: 0\nmodel name\t: X CPU\nphysical id\t: 0\ncore id\t: 0\nflags\t: fpu avx2 avx512f\n\n" +
    "processor\t: 1\nmodel name\t: X CPU\nphysical id\t: 0\ncore id\t: 0\nflags\t: fpu avx2 avx512f\n\n" +
    "processor\t: 2\nmodel name\t: X CPU\nphysical id\t: 0\ncore id\t: 1\nflags\t: fpu avx2 avx512f\n";
  assertEquals(parseCpuinfo(cpu), { cpuCores: 2, logicalCpus: 3, cpuName: "X CPU", avx512: true, avx2: true });
  const smi = parseNvidiaSmi("NVIDIA GeForce RTX 5070, 12227, 11800, 5, 16, 575.51, 12.0\n");
  assertEquals(smi[0].name, "NVIDIA GeForce RTX 5070");
  assertEquals([smi[0].totalBytes, smi[0].freeBytes, smi[0].pcieGen, smi[0].computeCapability], [12227 * 2 ** 20, 11800 * 2 ** 20, 5, "12.0"]);
  const p4 = pcieBandwidth(4, 16);
  assert(p4.copyGBps > 24 && p4.copyGBps < 27 && p4.zeroCopyGBps > 21 && p4.zeroCopyGBps < 24, JSON.stringify(p4));
});

test("probe on this machine: /proc numbers, and a note when there is no GPU", async () => {
  const host = probeHost();
  assertGreater(host.ramBytes, 0);
  assertGreater(host.cpuCores, 0);
  const p = await probeHardware();
  assertEquals(p.source, "probe");
  assertEquals(p.host.ramBytes, host.ramBytes);
  if (p.gpu === null) assertMatch(p.notes![0], /^no GPU found \(.*\), planning for profile cpu-only/);
  // A fallback profile lends its GPU when none is found.
  const f = await probeHardware({ fallback: "rtx-5070-12gb", gpus: { via: "none", why: ["test"] } });
  assertEquals(f.gpu!.vramBytes, 12 * GiB);
  assertMatch(f.notes![0], /no GPU found \(test\), planning for profile rtx-5070-12gb/);
  // A GPU found by NVML or nvidia-smi gets spec-table bandwidths.
  const g = await probeHardware({
    gpus: { via: "nvidia-smi", gpus: parseNvidiaSmi("NVIDIA H200, 143771, 140000, 5, 16, 580.1, 9.0") },
  });
  assertEquals([g.gpu!.vramGBps, g.gpu!.pcie.gen], [4800, 5]);
  assertMatch(g.notes![0], /GPU 0 via nvidia-smi: NVIDIA H200/);
});

test("resolveHardware: named, measured cache, overrides", async () => {
  const named = await resolveHardware({ kind: "profile", name: "rtx-4090-24gb" });
  assertEquals([named.name, named.source], ["rtx-4090-24gb", "builtin"]);
  const dir = mkdtempSync(join(tmpdir(), "spillway-hw-"));
  try {
    const cachePath = join(dir, "hardware.json");
    const measured = { ...getProfile("h200-gpu-machine")!, name: "bench:h200", source: "bench" };
    writeFileSync(cachePath, JSON.stringify(measured));
    const fromCache = await resolveHardware({ kind: "probe" }, { cachePath });
    assertEquals([fromCache.name, fromCache.source], ["bench:h200", "bench"]);
    assertMatch(fromCache.notes!.at(-1)!, /measured profile from .*hardware\.json/);
    writeFileSync(cachePath, "{ not json");
    const probed = await resolveHardware({ kind: "probe" }, { cachePath });
    assertEquals(probed.source, "probe");
    assertMatch(probed.notes!.at(-1)!, /is not JSON/);
    const cli = await resolveHardware({ kind: "probe" }, { cachePath, override: "rtx-5070-12gb" });
    assertEquals(cli.name, "rtx-5070-12gb");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const o = await resolveHardware({ kind: "explicit", profile: "rtx-5070-12gb", overrides: { gpu: { freeVramBytes: 10 * GiB }, host: { ramGBps: 80 } } });
  assertEquals([o.source, o.gpu!.freeVramBytes, o.gpu!.vramGBps, o.host.ramGBps], ["recipe", 10 * GiB, 672, 80]);
  assertEquals(applyOverrides(getProfile("rtx-5070-12gb")!, { gpu: null }).gpu, null);
  assertThrows(() => applyOverrides(getProfile("cpu-only")!, { gpu: { name: "x" } }), HardwareProbeError, "must give all of");
});

test("probe: RAM bandwidth is assumed per core until spillway bench measures it", async () => {
  const host = { ramBytes: 128 * GiB, availableRamBytes: 120 * GiB, cpuCores: 16, logicalCpus: 16, avx512: true, avx2: true };
  const p = await probeHardware({ host, gpus: { via: "none", why: ["test"] } });
  assertEquals(p.host.ramGBps, 96);
  assert(p.notes!.some((n) => n.includes("RAM bandwidth 96 GB/s") && n.includes("spillway bench")), p.notes!.join("\n"));
  const small = await probeHardware({ host: { ...host, cpuCores: 1, logicalCpus: 1 }, gpus: { via: "none", why: ["test"] } });
  assertEquals(small.host.ramGBps, 10);
});

test("resolve: a spillway bench cache is used only for the machine it measured", async () => {
  const { hostIds, machineKey, writeCacheEntry } = await import("../engine/hardware/measure/machine_cache.ts");
  const dir = mkdtempSync(join(tmpdir(), "spillway-hw-"));
  try {
    const cachePath = join(dir, "hardware.json");
    const profile = { ...getProfile("cpu-only")!, name: "bench: this host", source: "bench" as const, gpu: null };
    const other = { gpuName: "none", driver: "none", hostname: "elsewhere", cpuName: "other CPU", ramGiB: 1 };
    writeCacheEntry({ key: machineKey(other), ids: other, measuredAt: "2026-01-01T00:00:00Z", profile: { ...profile, name: "bench: elsewhere" } }, cachePath);
    const probed = await resolveHardware({ kind: "probe" }, { cachePath });
    assertEquals(probed.source, "probe");
    assertMatch(probed.notes!.at(-1)!, /other machines only/);
    // This machine has no GPU here, so its entry is keyed "none".
    const mine = { gpuName: "none", driver: "none", ...hostIds() };
    writeCacheEntry({ key: machineKey(mine), ids: mine, measuredAt: "2026-01-02T00:00:00Z", profile }, cachePath);
    const measured = await resolveHardware({ kind: "probe" }, { cachePath });
    assertEquals([measured.name, measured.source], ["bench: this host", "bench"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
