/**
 * One measurement of this machine's memory tiers (GPU copies, zero-copy and VRAM kernel reads,
 * pinning cost, CPU RAM, O_DIRECT disk reads) as a {@link HardwareProfile} (source "bench"), cached
 * per machine, and its text table. `spillway bench` (commands/bench.ts) prints it.
 *
 * @module
 */
import { join } from "node:path";
import type { Cuda } from "../../../ffi/cuda.ts";
import type { HardwareProfile, Measured } from "../../../core/types.ts";
import { type CacheEntry, cacheDir, findBenchEntry, hostIds, machineKey, type MachineIds, nvidiaDriverVersion, writeCacheEntry } from "./machine_cache.ts";
import { defaultCpuBufferBytes, measureCpuRam } from "./cpu.ts";
import { measureDiskRead } from "./disk.ts";
import { measureGpu } from "./gpu.ts";
import { measureConcurrent } from "./concurrent.ts";
import { formatBytes } from "../../../core/bytes.ts";
import { type BenchParts, benchProfile } from "./profile.ts";

/** Options of {@linkcode benchCommand} / {@linkcode runBench}. */
export interface BenchOptions {
  /** Print the JSON report on stdout (the table then goes to stderr). */
  json?: boolean;
  /** Measure even when this machine has a cached profile. */
  force?: boolean;
  /** Repeats per figure (default 5). */
  repeats?: number;
  /** Model file (read in place) or directory whose filesystem to measure; default the cache dir. */
  target?: string;
  /** Smaller buffers (256 MiB) for a fast, rougher run. */
  quick?: boolean;
  /** Buffer size of every measurement (overrides `quick`; the VRAM read uses twice this). */
  bytes?: number;
  /** Bytes per pinned allocation and registration trial (default: the buffer size). */
  pinBytes?: number;
  /** Parts to leave out. */
  skip?: ("gpu" | "cpu" | "disk" | "concurrent")[];
  /** CUDA driver library the concurrent helper opens (default libcuda.so.1). */
  libcudaPath?: string;
  /** GPU ordinal (default 0). */
  device?: number;
  /** Cache directory (default ~/.cache/spillway). */
  cacheDir?: string;
  /** Base profile (the probe's) for figures the bench does not measure. */
  base?: HardwareProfile;
  /** Opens the CUDA driver; default ffi/cuda.ts loadCuda(). */
  loadCuda?: () => Promise<Cuda>;
  /** Output sinks (default process.stdout / process.stderr). */
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
}

/** What a bench run produced (also the `--json` output). */
export interface BenchReport extends CacheEntry {
  /** true when the profile came from the cache instead of being measured now. */
  cached: boolean;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

async function openGpu(opts: BenchOptions): Promise<{ cu: Cuda; name: string } | { absent: string }> {
  let cu: Cuda;
  try {
    cu = await (opts.loadCuda ?? (async () => (await import("../../../ffi/cuda.ts")).loadCuda()))();
  } catch (e) {
    return { absent: `the CUDA driver could not be loaded (${(e as Error).message})` };
  }
  try {
    cu.init();
    const n = cu.deviceCount();
    const ordinal = opts.device ?? 0;
    if (n === 0) return { absent: "the CUDA driver reports no GPU" };
    if (ordinal >= n) return { absent: `GPU ${ordinal} requested but the driver reports ${n}` };
    return { cu, name: cu.deviceName(cu.device(ordinal)) };
  } catch (e) {
    return { absent: `CUDA initialization failed (${(e as Error).message})` };
  }
}

/** Measure (or take from the cache) this machine's profile. */
export async function runBench(opts: BenchOptions = {}): Promise<BenchReport> {
  const err = opts.stderr ?? ((t: string) => process.stderr.write(t));
  const dir = opts.cacheDir ?? cacheDir();
  const file = join(dir, "hardware.json");
  const skip = new Set(opts.skip ?? []);
  const repeats = opts.repeats ?? 5;
  const host = hostIds();

  const gpuOpen = skip.has("gpu") ? { absent: "skipped (--skip gpu)" } : await openGpu(opts);
  const gpuName = "cu" in gpuOpen ? gpuOpen.name : "none";
  const nvDriver = nvidiaDriverVersion();
  const driver = "cu" in gpuOpen ? nvDriver ?? `cuda ${cudaVersionOf(gpuOpen.cu)}` : "none";
  const ids: MachineIds = { gpuName, driver, ...host };
  const key = machineKey(ids);

  if (!opts.force) {
    const hit = findBenchEntry({ gpuName, driver }, file, host);
    if (hit) {
      err(`spillway bench: using the profile measured ${hit.measuredAt} for ${hit.key} (${file}); --force measures again\n`);
      if ("cu" in gpuOpen) gpuOpen.cu.close();
      return { ...hit, cached: true };
    }
  }

  const quick = opts.quick ?? false;
  const concurrent = "cu" in gpuOpen && !skip.has("concurrent");
  const steps = ("cu" in gpuOpen ? 1 : 0) + (skip.has("cpu") ? 0 : 1) + (skip.has("disk") ? 0 : 1) + (concurrent ? 1 : 0);
  let n = 0;
  const say = (what: string) => err(`[${++n}/${steps}] ${what}\n`);
  const parts: BenchParts = { gpu: null, cpu: null, disk: null, cpuName: host.cpuName, driver: nvDriver ?? undefined };
  const details: Record<string, unknown> = { repeats, quick };

  if ("cu" in gpuOpen) {
    say(`GPU ${gpuName}`);
    const cu = gpuOpen.cu;
    try {
      const sz = opts.bytes ?? (quick ? 256 * MiB : GiB);
      parts.gpu = await measureGpu(cu, {
        device: opts.device,
        repeats,
        copyBytes: sz,
        hostReadBytes: sz,
        vramBytes: 2 * sz,
        pinBytes: opts.pinBytes ?? sz,
        onStep: (s) => err(`      ${s}\n`),
      });
      parts.pcie = parts.gpu.pcie;
      details.gpu = { pciAddress: parts.gpu.pciAddress, multiprocessors: parts.gpu.multiprocessors, cudaVersion: parts.gpu.cudaVersion, copyBytes: sz };
    } finally {
      cu.close();
    }
  } else {
    parts.gpuAbsent = gpuOpen.absent;
    err(`spillway bench: no GPU: ${gpuOpen.absent}; measuring CPU and disk only\n`);
  }
  if (!skip.has("cpu")) {
    const bytes = opts.bytes ?? (quick ? 256 * MiB : defaultCpuBufferBytes());
    say(`CPU RAM read, all cores, ${formatBytes(bytes, "short")} x${repeats}`);
    parts.cpu = await measureCpuRam({ cacheDir: dir, bytes, repeats });
    details.cpu = { threads: parts.cpu.threads, bytes: parts.cpu.bytes };
  }
  if (concurrent) {
    // The concurrent tier: CPU threads and a GPU zero-copy kernel reading host memory at once.
    const bytes = opts.bytes ?? (quick ? 256 * MiB : GiB);
    say(`CPU and GPU zero-copy reading host memory alone and together, 2 x ${formatBytes(bytes, "short")} x${Math.min(repeats, 3)}`);
    parts.concurrent = await measureConcurrent({ cacheDir: dir, libcuda: opts.libcudaPath, cpuBytes: bytes, gpuBytes: bytes, repeats: Math.min(repeats, 3), seconds: quick ? 0.5 : 1.5, device: opts.device });
    details.concurrent = { threads: parts.concurrent.threads, bytes, gainVsBestAlone: parts.concurrent.gainVsBestAlone, ...(parts.concurrent.copyGainVsBestAlone !== undefined ? { copyGainVsBestAlone: parts.concurrent.copyGainVsBestAlone } : {}) };
  }
  if (!skip.has("disk")) {
    const target = opts.target ?? dir;
    const bytes = opts.bytes ?? (quick ? 256 * MiB : GiB);
    say(`sequential O_DIRECT read of ${target}, ${formatBytes(bytes, "short")} x${Math.min(repeats, 3)}`);
    parts.disk = await measureDiskRead({ cacheDir: dir, target, bytes, repeats: Math.min(repeats, 3) });
    details.disk = { file: parts.disk.file, scratch: parts.disk.scratch, direct: parts.disk.direct, bytes: parts.disk.bytes };
  }
  const profile = benchProfile(parts, opts.base);
  const entry: CacheEntry = { key, ids, measuredAt: new Date().toISOString(), profile, details };
  // A skipped part would leave defaults in the profile: only complete runs become the machine's profile.
  if (skip.size === 0) writeCacheEntry(entry, file);
  else err(`spillway bench: not cached (parts skipped: ${[...skip].join(", ")})\n`);
  return { ...entry, cached: false };
}

function cudaVersionOf(cu: Cuda): string {
  try {
    const v = cu.driverVersion();
    return `${Math.floor(v / 1000)}.${(v % 1000) / 10}`;
  } catch {
    return "unknown";
  }
}

const LABELS: Record<string, string> = {
  h2dGBps: "pinned host-to-device copy",
  d2hGBps: "device-to-host copy",
  zeroCopyGBps: "GPU kernel reading host-mapped memory (zero-copy)",
  registeredZeroCopyGBps: "GPU kernel reading registered malloc'd memory",
  vramGBps: "GPU kernel reading VRAM",
  pinnedAllocMsPerGiB: "pinned allocation (cuMemHostAlloc)",
  pinnedFreeMsPerGiB: "pinned free (cuMemFreeHost)",
  hostRegisterMsPerGiB: "registration (cuMemHostRegister)",
  hostUnregisterMsPerGiB: "unregistration (cuMemHostUnregister)",
  cpuRamGBps: "CPU reading RAM, all cores",
  cpuRamSimpleGBps: "CPU reading RAM, all cores, plain loop",
  diskReadGBps: "sequential read, O_DIRECT",
  concurrentCpuAloneGBps: "CPU reading pinned RAM, all cores (concurrent probe, alone)",
  concurrentGpuAloneGBps: "GPU zero-copy read (concurrent probe, alone)",
  concurrentCpuGBps: "CPU reading RAM while the GPU reads over PCIe",
  concurrentGpuGBps: "GPU zero-copy read while the CPU reads RAM",
  concurrentGpuQ8AloneGBps: "GPU zero-copy read, llama.cpp's Q8_0 mat-vec loads (concurrent probe, alone)",
  concurrentCopyAloneGBps: "copy engine, pinned RAM to VRAM in 2 MiB pieces (concurrent probe, alone)",
  concurrentCopyGBps: "copy engine to VRAM while the CPU reads RAM",
  concurrentCpuWithCopyGBps: "CPU reading RAM while the copy engine copies to VRAM",
};

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** The report as a text table. */
export function formatBenchTable(report: BenchReport): string {
  const p = report.profile;
  const lines: string[] = [];
  lines.push(`machine: ${report.key}`);
  lines.push(`${report.cached ? "cached, measured" : "measured"} ${report.measuredAt}`);
  if (!p.gpu) lines.push(`GPU: none (${p.notes?.find((n) => n.startsWith("no GPU"))?.replace(/^no GPU measured: /, "") ?? "not found"})`);
  else lines.push(`GPU: ${p.gpu.name}, ${formatBytes(p.gpu.vramBytes, "short")} (${formatBytes(p.gpu.freeVramBytes, "short")} free), PCIe gen ${p.gpu.pcie.gen} x${p.gpu.pcie.width}, driver ${p.gpu.driver}, sm_${p.gpu.computeCapability?.replace(".", "")}`);
  lines.push(`CPU: ${p.host.cpuName}, ${p.host.cpuCores} cores, ${formatBytes(p.host.ramBytes, "short")} RAM`);
  const rows: string[][] = [["figure", "min", "median", "max", "unit"]];
  for (const [k, m] of Object.entries(p.measured ?? {}) as [string, Measured][]) {
    rows.push([LABELS[k] ?? k, fmt(m.min), fmt(m.median), fmt(m.max), m.unit]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const [i, r] of rows.entries()) {
    lines.push(r.map((c, j) => (j === 0 ? c.padEnd(w[j]) : c.padStart(w[j]))).join("  "));
    if (i === 0) lines.push(w.map((x) => "-".repeat(x)).join("  "));
  }
  for (const n of p.notes ?? []) lines.push(`note: ${n}`);
  return lines.join("\n") + "\n";
}
