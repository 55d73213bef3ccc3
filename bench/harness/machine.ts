/**
 * Machine details recorded with every benchmark run: GPU (nvidia-smi), driver, PCIe link, CPU
 * model (lscpu / /proc/cpuinfo), RAM (/proc/meminfo). Missing tools give nulls, never an error:
 * the CPU mode runs on machines without nvidia-smi.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, hostname, release } from "node:os";

/** One GPU as nvidia-smi reports it. */
export interface GpuDetails {
  name: string;
  driver: string;
  memoryTotalMiB: number;
  memoryFreeMiB: number;
  pcieGenCurrent: number | null;
  pcieGenMax: number | null;
  pcieWidthCurrent: number | null;
  pcieWidthMax: number | null;
  computeCapability: string | null;
}

/** What a results file says about the machine it ran on. */
export interface MachineDetails {
  hostname: string;
  kernel: string;
  cpuModel: string;
  cpuCores: number;
  ramBytes: number;
  ramAvailableBytes: number;
  gpus: GpuDetails[];
  cudaVersion: string | null;
}

function run(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 20_000 });
  } catch {
    return null;
  }
}

function num(s: string | undefined): number | null {
  if (s === undefined) return null;
  const n = Number(s.trim());
  return Number.isFinite(n) ? n : null;
}

/** Parses `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` lines (fields as in {@link GPU_QUERY}). */
export function parseNvidiaSmi(csv: string): GpuDetails[] {
  const out: GpuDetails[] = [];
  for (const line of csv.split("\n")) {
    if (line.trim() === "") continue;
    const f = line.split(",").map((x) => x.trim());
    out.push({
      name: f[0] ?? "",
      driver: f[1] ?? "",
      memoryTotalMiB: num(f[2]) ?? 0,
      memoryFreeMiB: num(f[3]) ?? 0,
      pcieGenCurrent: num(f[4]),
      pcieGenMax: num(f[5]),
      pcieWidthCurrent: num(f[6]),
      pcieWidthMax: num(f[7]),
      computeCapability: f[8] && f[8] !== "[N/A]" ? f[8] : null,
    });
  }
  return out;
}

/** The nvidia-smi query fields, in the order {@link parseNvidiaSmi} reads them. */
export const GPU_QUERY: string =
  "name,driver_version,memory.total,memory.free,pcie.link.gen.current,pcie.link.gen.max," +
  "pcie.link.width.current,pcie.link.width.max,compute_cap";

/** Reads `MemTotal` and `MemAvailable` (bytes) from /proc/meminfo text. */
export function parseMeminfo(text: string): { total: number; available: number } {
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { total: kb("MemTotal"), available: kb("MemAvailable") };
}

/** Collects the details of this machine. */
export function machineDetails(): MachineDetails {
  let cpuModel = cpus()[0]?.model ?? "";
  const lscpu = run("lscpu", []);
  const m = lscpu ? /^Model name:\s+(.+)$/m.exec(lscpu) : null;
  if (m) cpuModel = m[1].trim();
  let mem = { total: 0, available: 0 };
  try {
    mem = parseMeminfo(readFileSync("/proc/meminfo", "utf8"));
  } catch { /* not Linux */ }
  const smi = run("nvidia-smi", [`--query-gpu=${GPU_QUERY}`, "--format=csv,noheader,nounits"]);
  const header = run("nvidia-smi", []);
  const cuda = header ? /CUDA Version:\s*([\d.]+)/.exec(header) : null;
  return {
    hostname: hostname(),
    kernel: release(),
    cpuModel,
    cpuCores: cpus().length,
    ramBytes: mem.total,
    ramAvailableBytes: mem.available,
    gpus: smi ? parseNvidiaSmi(smi) : [],
    cudaVersion: cuda ? cuda[1] : null,
  };
}

/** Short machine label for folder names, e.g. `h100-x1` or `cpu-2c`. */
export function machineLabel(d: MachineDetails): string {
  if (d.gpus.length > 0) {
    const g = /(H100|H200|A100|L40S|L4|RTX \w+|\w+)\s*(?:80GB|141GB)?/i.exec(d.gpus[0].name.replace(/^NVIDIA\s+/, ""));
    const name = (g ? g[1] : "gpu").toLowerCase().replace(/\s+/g, "");
    return `${name}-x${d.gpus.length}`;
  }
  return `cpu-${d.cpuCores}c`;
}
