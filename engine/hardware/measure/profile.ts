/**
 * Turns bench measurements into a {@link HardwareProfile} with `source: "bench"`. What the bench
 * does not measure (fp16 TFLOP/s, CPU GFLOP/s) comes from a base profile (the probe's) when given,
 * else from conservative defaults, and the notes say which.
 * @module
 */
import { readFileSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import type { HardwareProfile, Measured } from "../../../core/types.ts";
import { type ConcurrentRates, type ConcurrentResult, overlapGains } from "./concurrent.ts";
import type { CpuRamResult } from "./cpu.ts";
import type { DiskReadResult } from "./disk.ts";
import type { GpuBenchResult } from "./gpu.ts";

/** Everything one bench run produced; a part is null when it was skipped or not possible. */
export interface BenchParts {
  gpu: GpuBenchResult | null;
  /** Why there is no GPU part (no driver, no device, skipped). */
  gpuAbsent?: string;
  /** PCIe link of the GPU while busy, if readable. */
  pcie?: { gen: number; width: number } | null;
  cpu: CpuRamResult | null;
  disk: DiskReadResult | null;
  /** The concurrent tier figure (CPU and GPU zero-copy reading host memory at once), if measured. */
  concurrent?: ConcurrentResult | null;
  /** NVIDIA driver version, if known. */
  driver?: string;
  cpuName: string;
}

// Dense fp16 tensor TFLOP/s by GPU name (spec sheets), used only when no base profile says.
const FP16_TFLOPS: [RegExp, number][] = [
  [/H200/, 989],
  [/H100.*PCIe/, 756],
  [/H100/, 989],
  [/A100/, 312],
  [/L40S/, 362],
  [/L40\b/, 181],
  [/L4\b/, 121],
  [/A10\b/, 125],
  [/RTX 4090/, 165],
  [/RTX 3090/, 71],
];

function meminfo(field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync("/proc/meminfo", "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Each concurrent probe rate's name among a profile's `measured` figures, where the planner's hybrid
 * split reads them (both paths' rates over the same window; the Q8_0 and copy-engine passes where the
 * probe ran them). The one mapping, both ways.
 */
const MEASURED_NAME = {
  cpuAloneGBps: "concurrentCpuAloneGBps",
  gpuAloneGBps: "concurrentGpuAloneGBps",
  cpuTogetherGBps: "concurrentCpuGBps",
  gpuTogetherGBps: "concurrentGpuGBps",
  gpuQ8AloneGBps: "concurrentGpuQ8AloneGBps",
  copyAloneGBps: "concurrentCopyAloneGBps",
  copyTogetherGBps: "concurrentCopyGBps",
  cpuWithCopyGBps: "concurrentCpuWithCopyGBps",
} as const satisfies Record<keyof ConcurrentRates, string>;

/**
 * The concurrent probe's rates as a profile's `measured` entries ({@link MEASURED_NAME}).
 *
 * @example
 * const hw = { ...profile, measured: { ...profile.measured, ...concurrentMeasured(result) } };
 */
export function concurrentMeasured(c: ConcurrentRates): Record<string, Measured> {
  const m: Record<string, Measured> = {};
  for (const [rate, name] of Object.entries(MEASURED_NAME)) {
    const v = c[rate as keyof ConcurrentRates];
    if (v) m[name] = v;
  }
  return m;
}

/**
 * {@link overlapGains} of the probe rates a profile holds (back through {@link MEASURED_NAME}):
 * null without the concurrent figure; `copy` where the copy passes ran.
 *
 * @example
 * measuredOverlapGains(profile.measured)?.copy; // e.g. 1.16: both paths together over the faster alone
 */
export function measuredOverlapGains(m: Record<string, Measured> | undefined): { zeroCopy: number; copy?: number } | null {
  const c: Partial<ConcurrentRates> = {};
  for (const [rate, name] of Object.entries(MEASURED_NAME)) if (m?.[name]) c[rate as keyof ConcurrentRates] = m[name];
  if (!c.cpuAloneGBps || !c.gpuAloneGBps || !c.cpuTogetherGBps || !c.gpuTogetherGBps) return null;
  return overlapGains(c as ConcurrentRates);
}

/** Build the profile from the bench parts, filling unmeasured figures from `base` or defaults. */
export function benchProfile(parts: BenchParts, base?: HardwareProfile): HardwareProfile {
  const notes: string[] = [];
  const measured: Record<string, Measured> = {};
  let gpu: HardwareProfile["gpu"] = null;
  if (parts.gpu) {
    const g = parts.gpu;
    Object.assign(measured, g.measured);
    let tflops = base?.gpu?.fp16Tflops;
    if (tflops === undefined) {
      tflops = FP16_TFLOPS.find(([re]) => re.test(g.name))?.[1] ?? 100;
      notes.push(`fp16 TFLOP/s not measured: ${tflops} from the spec sheet table${FP16_TFLOPS.some(([re]) => re.test(g.name)) ? "" : " default (unknown GPU)"}`);
    }
    const pcie = parts.pcie ?? base?.gpu?.pcie ?? { gen: 4, width: 16 };
    if (!parts.pcie) notes.push(`PCIe link not readable from sysfs: gen ${pcie.gen} x${pcie.width} ${base?.gpu ? "from the base profile" : "assumed"}`);
    gpu = {
      name: g.name,
      vramBytes: g.vramBytes,
      freeVramBytes: g.freeVramBytes,
      vramGBps: g.measured.vramGBps.median,
      fp16Tflops: tflops,
      pcie,
      h2dGBps: g.measured.h2dGBps.median,
      d2hGBps: g.measured.d2hGBps.median,
      zeroCopyGBps: g.measured.zeroCopyGBps.median,
      driver: parts.driver ?? `cuda ${g.cudaVersion}`,
      computeCapability: g.computeCapability,
    };
  } else {
    notes.push(`no GPU measured: ${parts.gpuAbsent ?? "skipped"}`);
  }
  const cores = availableParallelism();
  let ramGBps = base?.host.ramGBps ?? 20;
  if (parts.cpu) {
    measured.cpuRamGBps = parts.cpu.ramGBps;
    if (parts.cpu.simpleGBps) measured.cpuRamSimpleGBps = parts.cpu.simpleGBps;
    ramGBps = parts.cpu.ramGBps.median;
  } else notes.push(`CPU RAM bandwidth not measured: ${ramGBps} GB/s ${base ? "from the base profile" : "assumed"}`);
  const cpuGflops = base?.host.cpuGflops ?? cores * 40;
  if (base?.host.cpuGflops === undefined) notes.push(`CPU GFLOP/s not measured: ${cpuGflops} assumed (${cores} cores x 40)`);
  let readGBps = base?.disk.readGBps ?? 1;
  if (parts.concurrent) Object.assign(measured, concurrentMeasured(parts.concurrent));
  if (parts.disk) {
    measured.diskReadGBps = parts.disk.readGBps;
    readGBps = parts.disk.readGBps.median;
    if (!parts.disk.direct) notes.push("disk: the filesystem refused O_DIRECT; read after dropping cached pages instead");
  } else notes.push(`disk read not measured: ${readGBps} GB/s ${base ? "from the base profile" : "assumed"}`);
  const ramBytes = meminfo("MemTotal") ?? totalmem();
  return {
    name: `bench: ${gpu ? gpu.name : "CPU only"} on ${parts.cpuName}`,
    source: "bench",
    notes,
    gpu,
    host: {
      ramBytes,
      availableRamBytes: meminfo("MemAvailable") ?? ramBytes,
      ramGBps,
      cpuCores: cores,
      cpuName: parts.cpuName,
      cpuGflops,
    },
    disk: { readGBps },
    measured,
  };
}
