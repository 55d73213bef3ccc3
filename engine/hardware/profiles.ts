/**
 * Built-in hardware profiles: machines the planner can plan for without probing. Numbers are
 * spec-sheet or measured values; each profile says which in its notes.
 *
 * @module
 */
import type { HardwareProfile } from "../../core/types.ts";

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** RTX 5070: 12 GB GDDR7 (192-bit, 28 Gbps = 672 GB/s), PCIe 5.0 card here in a PCIe 4.0 x16 slot. */
const rtx5070: HardwareProfile = {
  name: "rtx-5070-12gb",
  source: "builtin",
  notes: [
    "RTX 5070 12 GB GDDR7 (672 GB/s spec) in a PCIe 4.0 x16 slot (~25 GB/s copies, ~22 GB/s zero-copy reads)",
    "desktop with 64 GB DDR5 (~60 GB/s), 8 cores; ~400 MiB of VRAM assumed taken by the display and driver",
  ],
  gpu: {
    name: "NVIDIA GeForce RTX 5070",
    vramBytes: 12 * GiB,
    freeVramBytes: 12 * GiB - 400 * MiB,
    vramGBps: 672,
    // Dense fp16 tensor throughput as GeForce spec sheets list it (fp16 accumulate).
    fp16Tflops: 123,
    pcie: { gen: 4, width: 16 },
    h2dGBps: 25,
    d2hGBps: 25,
    zeroCopyGBps: 22,
    computeCapability: "12.0",
  },
  host: {
    ramBytes: 64 * GiB,
    availableRamBytes: 58 * GiB,
    ramGBps: 60,
    cpuCores: 8,
    cpuName: "8-core desktop CPU (DDR5-6000, dual channel)",
    cpuGflops: 800,
  },
  disk: { readGBps: 5 },
};

/** RTX 4090: 24 GB GDDR6X 1008 GB/s, PCIe 4.0 x16. */
const rtx4090: HardwareProfile = {
  name: "rtx-4090-24gb",
  source: "builtin",
  notes: ["RTX 4090 24 GB GDDR6X (1008 GB/s spec), PCIe 4.0 x16; desktop with 64 GB DDR5, 16 cores"],
  gpu: {
    name: "NVIDIA GeForce RTX 4090",
    vramBytes: 24 * GiB,
    freeVramBytes: 24 * GiB - 400 * MiB,
    vramGBps: 1008,
    fp16Tflops: 330,
    pcie: { gen: 4, width: 16 },
    h2dGBps: 25,
    d2hGBps: 25,
    zeroCopyGBps: 22,
    computeCapability: "8.9",
  },
  host: {
    ramBytes: 64 * GiB,
    availableRamBytes: 58 * GiB,
    ramGBps: 60,
    cpuCores: 16,
    cpuName: "16-core desktop CPU (DDR5, dual channel)",
    cpuGflops: 1200,
  },
  disk: { readGBps: 5 },
};

/** The measured GPU machine (/work/shared/gpu/NOTES.md): H200 141 GB, PCIe Gen5 x16, 16 Xeon cores. */
const h200: HardwareProfile = {
  name: "h200-gpu-machine",
  source: "builtin",
  notes: [
    "measured (shared/gpu/NOTES.md): VRAM read 4485 GB/s, pinned H2D 55.4 GB/s, D2H 55.3 GB/s, zero-copy 51.3 GB/s, 16 threads summing RAM 69 GB/s",
  ],
  gpu: {
    name: "NVIDIA H200",
    vramBytes: 143771 * MiB,
    freeVramBytes: 143771 * MiB - 600 * MiB,
    vramGBps: 4485,
    fp16Tflops: 989,
    pcie: { gen: 5, width: 16 },
    h2dGBps: 55.4,
    d2hGBps: 55.3,
    zeroCopyGBps: 51.3,
    driver: "580",
    computeCapability: "9.0",
  },
  host: {
    ramBytes: 128 * GiB,
    availableRamBytes: 120 * GiB,
    ramGBps: 69,
    cpuCores: 16,
    cpuName: "16 Xeon cores (AVX-512, AMX)",
    cpuGflops: 1500,
  },
  disk: { readGBps: 3 },
};

/** The same machine with a ballast holding all but 12 GiB of VRAM (the NOTES.md reference runs). */
const h200Free12: HardwareProfile = {
  ...h200,
  name: "h200-12gib-free",
  notes: [...h200.notes!, "a ballast process holds all but 12 GiB of VRAM, emulating a 12 GB card"],
  gpu: { ...h200.gpu!, freeVramBytes: 12 * GiB },
};

/** No GPU: a generic desktop, for CPU-only planning. */
const cpuOnly: HardwareProfile = {
  name: "cpu-only",
  source: "builtin",
  notes: ["no GPU; a generic desktop with 32 GB RAM (~40 GB/s), 8 cores"],
  gpu: null,
  host: { ramBytes: 32 * GiB, availableRamBytes: 28 * GiB, ramGBps: 40, cpuCores: 8, cpuGflops: 500 },
  disk: { readGBps: 2 },
};

const PROFILES: readonly HardwareProfile[] = [rtx5070, rtx4090, h200, h200Free12, cpuOnly];

/** Names of the built-in profiles. */
export function profileNames(): string[] {
  return PROFILES.map((p) => p.name);
}

/** True when `name` is a built-in profile. */
export function isProfileName(name: string): boolean {
  return PROFILES.some((p) => p.name === name);
}

/** A deep copy of a built-in profile, or null when there is none of that name. */
export function getProfile(name: string): HardwareProfile | null {
  const p = PROFILES.find((x) => x.name === name);
  return p === undefined ? null : structuredClone(p);
}
