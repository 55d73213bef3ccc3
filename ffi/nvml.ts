/**
 * A minimal NVML binding through the FFI core, for the hardware probe: device name, memory, PCIe
 * link, driver, compute capability, memory bus. Opened and closed per probe.
 *
 * @module
 */
import { loadFfi } from "./mod.ts";

/** What NVML says about one GPU. */
export interface NvmlGpu {
  index: number;
  name: string;
  totalBytes: number;
  freeBytes: number;
  pcieGen: number;
  pcieWidth: number;
  driver?: string;
  computeCapability?: string;
  /** Memory bus width in bits, when NVML reports it. */
  busWidthBits?: number;
  /** Maximum memory clock in MHz, when NVML reports it. */
  memClockMHz?: number;
}

const SYMBOLS = {
  nvmlInit_v2: { args: [], result: "i32" },
  nvmlShutdown: { args: [], result: "i32" },
  nvmlDeviceGetCount_v2: { args: ["buffer"], result: "i32" },
  nvmlDeviceGetHandleByIndex_v2: { args: ["u32", "buffer"], result: "i32" },
  nvmlDeviceGetName: { args: ["ptr", "buffer", "u32"], result: "i32" },
  nvmlDeviceGetMemoryInfo: { args: ["ptr", "buffer"], result: "i32" },
  nvmlDeviceGetMaxPcieLinkGeneration: { args: ["ptr", "buffer"], result: "i32" },
  nvmlDeviceGetMaxPcieLinkWidth: { args: ["ptr", "buffer"], result: "i32" },
  nvmlSystemGetDriverVersion: { args: ["buffer", "u32"], result: "i32" },
  nvmlDeviceGetCudaComputeCapability: { args: ["ptr", "buffer", "buffer"], result: "i32" },
  nvmlDeviceGetMemoryBusWidth: { args: ["ptr", "buffer"], result: "i32" },
  nvmlDeviceGetMaxClockInfo: { args: ["ptr", "u32", "buffer"], result: "i32" },
} as const;

const NVML_CLOCK_MEM = 2;

function cstr(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return new TextDecoder().decode(end < 0 ? buf : buf.subarray(0, end));
}

/**
 * Query all GPUs through libnvidia-ml.so.1.
 * @throws FfiLoadError when the library is absent; Error when nvmlInit fails.
 */
export async function queryNvml(): Promise<NvmlGpu[]> {
  const ffi = await loadFfi();
  const lib = ffi.open("libnvidia-ml.so.1", SYMBOLS);
  const s = lib.symbols;
  try {
    const rc = s.nvmlInit_v2();
    if (rc !== 0) throw new Error(`nvmlInit_v2 failed with NVML error ${rc}`);
    try {
      const u32 = new Uint8Array(4);
      const dv = new DataView(u32.buffer);
      if (s.nvmlDeviceGetCount_v2(u32) !== 0) return [];
      const count = dv.getUint32(0, true);
      const drv = new Uint8Array(96);
      const driver = s.nvmlSystemGetDriverVersion(drv, drv.length) === 0 ? cstr(drv) : undefined;
      const gpus: NvmlGpu[] = [];
      for (let i = 0; i < count; i++) {
        const hb = new Uint8Array(8);
        if (s.nvmlDeviceGetHandleByIndex_v2(i, hb) !== 0) continue;
        const h = new DataView(hb.buffer).getBigUint64(0, true);
        const nameBuf = new Uint8Array(96);
        const name = s.nvmlDeviceGetName(h, nameBuf, nameBuf.length) === 0 ? cstr(nameBuf) : `GPU ${i}`;
        const mem = new Uint8Array(24); // nvmlMemory_t { total, free, used } (unsigned long long)
        if (s.nvmlDeviceGetMemoryInfo(h, mem) !== 0) continue;
        const mv = new DataView(mem.buffer);
        const u = (fn: (out: Uint8Array) => number): number | undefined => (fn(u32) === 0 ? dv.getUint32(0, true) : undefined);
        const gpu: NvmlGpu = {
          index: i,
          name,
          totalBytes: Number(mv.getBigUint64(0, true)),
          freeBytes: Number(mv.getBigUint64(8, true)),
          pcieGen: u((o) => s.nvmlDeviceGetMaxPcieLinkGeneration(h, o)) ?? 4,
          pcieWidth: u((o) => s.nvmlDeviceGetMaxPcieLinkWidth(h, o)) ?? 16,
          driver,
          busWidthBits: u((o) => s.nvmlDeviceGetMemoryBusWidth(h, o)),
          memClockMHz: u((o) => s.nvmlDeviceGetMaxClockInfo(h, NVML_CLOCK_MEM, o)),
        };
        const maj = new Uint8Array(4);
        const min = new Uint8Array(4);
        if (s.nvmlDeviceGetCudaComputeCapability(h, maj, min) === 0) {
          gpu.computeCapability = `${new DataView(maj.buffer).getInt32(0, true)}.${new DataView(min.buffer).getInt32(0, true)}`;
        }
        gpus.push(gpu);
      }
      return gpus;
    } finally {
      s.nvmlShutdown();
    }
  } finally {
    lib.close();
  }
}
