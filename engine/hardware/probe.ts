/**
 * Probe this machine: RAM and CPUs from /proc, the GPU through NVML (via the FFI core) when
 * libnvidia-ml.so.1 loads, else `nvidia-smi`, else none. Bandwidths that a probe cannot see are
 * taken from the spec table or a profile and said so in `notes`; `spillway bench` measures them.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, freemem, totalmem } from "node:os";
import type { HardwareProfile } from "../../core/types.ts";
import { gpuSpecFor, pcieBandwidth } from "./gpu_specs.ts";
import { type NvmlGpu, queryNvml } from "../../ffi/nvml.ts";
import { getProfile } from "./profiles.ts";
import { localGpuDevices } from "./nodes.ts";

/** Host facts read from /proc. */
export interface HostFacts {
  ramBytes: number;
  availableRamBytes: number;
  /** Physical cores (unique core ids per package), or logical CPUs when that is unknown. */
  cpuCores: number;
  logicalCpus: number;
  cpuName?: string;
  /** CPU flags relevant to quantized matmul speed. */
  avx512: boolean;
  avx2: boolean;
}

/** Parse /proc/meminfo text: MemTotal and MemAvailable in bytes. */
export function parseMeminfo(text: string): { ramBytes: number; availableRamBytes: number } | null {
  const kb = (key: string): number | null => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s*kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : null;
  };
  const total = kb("MemTotal");
  if (total === null) return null;
  return { ramBytes: total, availableRamBytes: kb("MemAvailable") ?? kb("MemFree") ?? total };
}

/** Parse /proc/cpuinfo text: cores, logical CPUs, model name, SIMD flags. */
export function parseCpuinfo(text: string): Omit<HostFacts, "ramBytes" | "availableRamBytes"> | null {
  const blocks = text.split(/\n\s*\n/).filter((b) => /^processor\s*:/m.test(b));
  if (blocks.length === 0) return null;
  const field = (b: string, k: string): string | undefined => new RegExp(`^${k}\\s*:\\s*(.*)$`, "m").exec(b)?.[1]?.trim();
  const cores = new Set<string>();
  for (const b of blocks) {
    const pkg = field(b, "physical id");
    const core = field(b, "core id");
    if (pkg !== undefined && core !== undefined) cores.add(`${pkg}:${core}`);
  }
  const flags = ` ${field(blocks[0], "flags") ?? ""} `;
  return {
    cpuCores: cores.size > 0 ? cores.size : blocks.length,
    logicalCpus: blocks.length,
    cpuName: field(blocks[0], "model name"),
    avx512: flags.includes(" avx512f "),
    avx2: flags.includes(" avx2 "),
  };
}

/** Read host facts from /proc (falling back to node:os where /proc is absent). */
export function probeHost(): HostFacts {
  let mem: ReturnType<typeof parseMeminfo> = null;
  let cpu: ReturnType<typeof parseCpuinfo> = null;
  try {
    mem = parseMeminfo(readFileSync("/proc/meminfo", "utf8"));
  } catch { /* not Linux: node:os below */ }
  try {
    cpu = parseCpuinfo(readFileSync("/proc/cpuinfo", "utf8"));
  } catch { /* not Linux */ }
  const n = cpus().length || 1;
  return {
    ramBytes: mem?.ramBytes ?? totalmem(),
    availableRamBytes: mem?.availableRamBytes ?? freemem(),
    cpuCores: cpu?.cpuCores ?? n,
    logicalCpus: cpu?.logicalCpus ?? n,
    cpuName: cpu?.cpuName ?? cpus()[0]?.model,
    avx512: cpu?.avx512 ?? false,
    avx2: cpu?.avx2 ?? false,
  };
}

/** Parse `nvidia-smi --query-gpu=name,memory.total,memory.free,pcie.link.gen.max,pcie.link.width.max,driver_version,compute_cap --format=csv,noheader,nounits`. */
export function parseNvidiaSmi(text: string): NvmlGpu[] {
  const out: NvmlGpu[] = [];
  for (const [i, line] of text.trim().split("\n").filter((l) => l.trim() !== "").entries()) {
    const f = line.split(",").map((x) => x.trim());
    if (f.length < 3) continue;
    const num = (s: string | undefined, d: number): number => (s !== undefined && /^\d+(\.\d+)?$/.test(s) ? Number(s) : d);
    out.push({
      index: i,
      name: f[0],
      totalBytes: num(f[1], 0) * 2 ** 20,
      freeBytes: num(f[2], 0) * 2 ** 20,
      pcieGen: num(f[3], 4),
      pcieWidth: num(f[4], 16),
      driver: f[5] || undefined,
      computeCapability: f[6] || undefined,
    });
  }
  return out;
}

/** How the GPU was found. */
export type GpuProbe = { via: "nvml" | "nvidia-smi"; gpus: NvmlGpu[] } | { via: "none"; why: string[] };

/** Find GPUs: NVML first, then nvidia-smi. Never throws; says why when none was found. */
export async function probeGpus(): Promise<GpuProbe> {
  const why: string[] = [];
  try {
    const gpus = await queryNvml();
    if (gpus.length > 0) return { via: "nvml", gpus };
    why.push("NVML reports no GPU");
  } catch (e) {
    why.push(`NVML: ${(e as Error).message.split("\n")[0]}`);
  }
  const r = spawnSync(
    "nvidia-smi",
    [
      "--query-gpu=name,memory.total,memory.free,pcie.link.gen.max,pcie.link.width.max,driver_version,compute_cap",
      "--format=csv,noheader,nounits",
    ],
    { encoding: "utf8", timeout: 10_000 },
  );
  if (r.error !== undefined) why.push(`nvidia-smi: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`);
  else if (r.status !== 0) why.push(`nvidia-smi exited ${r.status}: ${(r.stderr ?? "").trim().split("\n")[0]}`);
  else {
    const gpus = parseNvidiaSmi(r.stdout);
    if (gpus.length > 0) return { via: "nvidia-smi", gpus };
    why.push("nvidia-smi lists no GPU");
  }
  return { via: "none", why };
}

/** Options of {@link probeHardware}. */
export interface ProbeOptions {
  /** Profile to plan for when no GPU is found (its GPU is used); default: CPU-only. */
  fallback?: string;
  /** Profile whose host bandwidth and disk numbers stand in for what a probe cannot measure; default `cpu-only`. */
  assumeFrom?: string;
  /** Injected GPU probe result (tests). */
  gpus?: GpuProbe;
  /** Injected host facts (tests). */
  host?: HostFacts;
}

/**
 * RAM read bandwidth assumed before `spillway bench` measures it: about 6 GB/s per core, 10 to
 * 100 GB/s. A flat guess misleads the planner on servers (the 16-core H200 host measured 91-98 GB/s,
 * where 40 made CPU-side experts look slower than zero-copy and the plan lost 40% of decode).
 */
export function assumedRamGBps(cores: number): number {
  return Math.min(100, Math.max(10, 6 * cores));
}

/**
 * Probe this machine into a HardwareProfile (source `probe`). When no GPU is found the profile
 * has no GPU (or `fallback`'s GPU), and a note says so: "no GPU found, planning for profile X".
 */
export async function probeHardware(options: ProbeOptions = {}): Promise<HardwareProfile> {
  const host = options.host ?? probeHost();
  const found = options.gpus ?? await probeGpus();
  const base = getProfile(options.assumeFrom ?? "cpu-only") ?? getProfile("cpu-only")!;
  const notes: string[] = [];
  const perCore = host.avx512 ? 100 : host.avx2 ? 60 : 25;
  const profile: HardwareProfile = {
    name: "probe",
    source: "probe",
    notes,
    gpu: null,
    host: {
      ramBytes: host.ramBytes,
      availableRamBytes: host.availableRamBytes,
      ramGBps: assumedRamGBps(host.cpuCores),
      cpuCores: host.cpuCores,
      cpuGflops: host.cpuCores * perCore,
    },
    disk: { ...base.disk },
  };
  if (host.cpuName !== undefined) profile.host.cpuName = host.cpuName;
  notes.push(
    `host: ${(host.ramBytes / 2 ** 30).toFixed(1)} GiB RAM (${(host.availableRamBytes / 2 ** 30).toFixed(1)} GiB available), ` +
      `${host.cpuCores} cores from /proc; RAM bandwidth ${profile.host.ramGBps} GB/s and CPU ${profile.host.cpuGflops} GFLOP/s assumed (run \`spillway bench\` to measure)`,
  );
  if (found.via === "none") {
    const fb = options.fallback === undefined ? null : getProfile(options.fallback);
    if (fb !== null && fb.gpu !== null) {
      profile.gpu = fb.gpu;
      profile.name = `probe+${fb.name}`;
      notes.unshift(`no GPU found (${found.why.join("; ")}), planning for profile ${fb.name}'s GPU`);
    } else {
      notes.unshift(`no GPU found (${found.why.join("; ")}), planning for profile cpu-only (CPU-only)`);
    }
    return profile;
  }
  const g = found.gpus[0];
  const spec = gpuSpecFor(g.name);
  const pcie = pcieBandwidth(g.pcieGen, g.pcieWidth);
  let vramGBps = spec?.vramGBps;
  if (vramGBps === undefined && g.busWidthBits && g.memClockMHz) {
    vramGBps = +(g.busWidthBits / 8 * g.memClockMHz * 2 / 1000).toFixed(0);
  }
  profile.name = `probe:${g.name}`;
  profile.gpu = {
    name: g.name,
    vramBytes: g.totalBytes,
    freeVramBytes: g.freeBytes,
    vramGBps: vramGBps ?? 500,
    fp16Tflops: spec?.fp16Tflops ?? 50,
    pcie: { gen: g.pcieGen, width: g.pcieWidth },
    h2dGBps: pcie.copyGBps,
    d2hGBps: pcie.copyGBps,
    zeroCopyGBps: pcie.zeroCopyGBps,
  };
  // Every local GPU with its free memory and link (issue 19): the planner may split over them.
  if (found.gpus.length > 1) profile.devices = localGpuDevices(found.gpus);
  if (g.driver !== undefined) profile.gpu.driver = g.driver;
  if (g.computeCapability !== undefined) profile.gpu.computeCapability = g.computeCapability;
  notes.unshift(
    `GPU 0 via ${found.via}: ${g.name}, ${(g.totalBytes / 2 ** 30).toFixed(1)} GiB (${(g.freeBytes / 2 ** 30).toFixed(1)} GiB free), PCIe ${g.pcieGen}.0 x${g.pcieWidth}` +
      (found.gpus.length > 1 ? ` (${found.gpus.length} GPUs; planning for GPU 0)` : ""),
    `VRAM ${profile.gpu.vramGBps} GB/s and ${profile.gpu.fp16Tflops} TFLOP/s ${spec ? "from the spec table" : "estimated"}; PCIe bandwidths estimated from the link (run \`spillway bench\` to measure)`,
  );
  return profile;
}
