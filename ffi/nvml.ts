/**
 * NVML bindings over the FFI core: enough to probe a GPU (name, memory, PCIe link, driver)
 * without nvidia-smi. Returns null when libnvidia-ml.so.1 is absent or finds no device.
 *
 * @example
 * ```ts
 * import { probeNvml } from "./nvml.ts";
 * const gpus = await probeNvml();
 * console.log(gpus ?? "no NVIDIA GPU");
 * ```
 *
 * @module
 */
import { loadFfi } from "./mod.ts";
import { defineStruct } from "./struct.ts";
import type { Ffi } from "./types.ts";

/** What NVML reports about one GPU. */
export interface NvmlGpu {
  index: number;
  name: string;
  totalBytes: number;
  freeBytes: number;
  usedBytes: number;
  pcieGen: number;
  pcieWidth: number;
  pcieMaxGen: number;
  pcieMaxWidth: number;
  driver: string;
}

const DECLS = {
  nvmlInit_v2: { args: [], result: "i32" },
  nvmlShutdown: { args: [], result: "i32" },
  nvmlDeviceGetCount_v2: { args: ["buffer"], result: "i32" },
  nvmlDeviceGetHandleByIndex_v2: { args: ["u32", "buffer"], result: "i32" },
  nvmlDeviceGetName: { args: ["ptr", "buffer", "u32"], result: "i32" },
  nvmlDeviceGetMemoryInfo: { args: ["ptr", "buffer"], result: "i32" },
  nvmlDeviceGetCurrPcieLinkGeneration: { args: ["ptr", "buffer"], result: "i32" },
  nvmlDeviceGetCurrPcieLinkWidth: { args: ["ptr", "buffer"], result: "i32" },
  nvmlDeviceGetMaxPcieLinkGeneration: { args: ["ptr", "buffer"], result: "i32" },
  nvmlDeviceGetMaxPcieLinkWidth: { args: ["ptr", "buffer"], result: "i32" },
  nvmlSystemGetDriverVersion: { args: ["buffer", "u32"], result: "i32" },
} as const;

/** nvmlMemory_t: total, free, used (unsigned long long each). */
const NvmlMemory = defineStruct("nvmlMemory_t", 24, {
  total: { offset: 0, type: "u64" },
  free: { offset: 8, type: "u64" },
  used: { offset: 16, type: "u64" },
});

function cstr(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

function u32(ffiCall: (out: Uint8Array) => number): number {
  const out = new Uint8Array(4);
  return ffiCall(out) === 0 ? new DataView(out.buffer).getUint32(0, true) : 0;
}

/** Probe all NVIDIA GPUs through NVML; null when NVML is unavailable or reports no device. */
export async function probeNvml(library = "libnvidia-ml.so.1"): Promise<NvmlGpu[] | null> {
  const ffi: Ffi = await loadFfi();
  let lib;
  try {
    lib = ffi.open(library, DECLS);
  } catch {
    return null;
  }
  const s = lib.symbols;
  try {
    if (s.nvmlInit_v2() !== 0) return null;
    const count = u32((o) => s.nvmlDeviceGetCount_v2(o));
    const driverBuf = new Uint8Array(96);
    const driver = s.nvmlSystemGetDriverVersion(driverBuf, 96) === 0 ? cstr(driverBuf) : "";
    const gpus: NvmlGpu[] = [];
    for (let i = 0; i < count; i++) {
      const h = new Uint8Array(8);
      if (s.nvmlDeviceGetHandleByIndex_v2(i, h) !== 0) continue;
      const handle = new DataView(h.buffer).getBigUint64(0, true);
      const nameBuf = new Uint8Array(96);
      s.nvmlDeviceGetName(handle, nameBuf, 96);
      const mem = new Uint8Array(NvmlMemory.size);
      const m = s.nvmlDeviceGetMemoryInfo(handle, mem) === 0 ? NvmlMemory.decode(mem) : { total: 0n, free: 0n, used: 0n };
      gpus.push({
        index: i,
        name: cstr(nameBuf),
        totalBytes: Number(m.total),
        freeBytes: Number(m.free),
        usedBytes: Number(m.used),
        pcieGen: u32((o) => s.nvmlDeviceGetCurrPcieLinkGeneration(handle, o)),
        pcieWidth: u32((o) => s.nvmlDeviceGetCurrPcieLinkWidth(handle, o)),
        pcieMaxGen: u32((o) => s.nvmlDeviceGetMaxPcieLinkGeneration(handle, o)),
        pcieMaxWidth: u32((o) => s.nvmlDeviceGetMaxPcieLinkWidth(handle, o)),
        driver,
      });
    }
    s.nvmlShutdown();
    return gpus.length ? gpus : null;
  } finally {
    lib.close();
  }
}
