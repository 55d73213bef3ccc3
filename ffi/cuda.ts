/**
 * CUDA driver API bindings over the FFI core (libcuda.so.1): just what the memory-tier benchmark
 * needs (context, allocation, copies, pinned/mapped host memory, PTX modules, kernel launch, events).
 * Every call checks its CUresult and throws {@linkcode CudaError} naming the call and the driver's
 * error name and text.
 *
 * @example
 * ```ts
 * import { loadCuda } from "./cuda.ts";
 * const cu = await loadCuda();          // throws FfiLoadError when there is no driver
 * cu.init();
 * const dev = cu.device(0);
 * console.log(cu.deviceName(dev), cu.driverVersion());
 * ```
 *
 * @module
 */
import { HardwareProbeError } from "../core/errors.ts";
import { loadFfi } from "./mod.ts";
import type { Ffi, NativeLibrary } from "./types.ts";

/** Device attributes used by spillway (values of CUdevice_attribute). */
export const CU_DEVICE_ATTRIBUTE = {
  MAX_THREADS_PER_BLOCK: 1,
  MULTIPROCESSOR_COUNT: 16,
  CAN_MAP_HOST_MEMORY: 19,
  PCI_BUS_ID: 33,
  PCI_DEVICE_ID: 34,
  UNIFIED_ADDRESSING: 41,
  PCI_DOMAIN_ID: 50,
  COMPUTE_CAPABILITY_MAJOR: 75,
  COMPUTE_CAPABILITY_MINOR: 76,
} as const;

/** cuMemHostAlloc flags. */
export const CU_MEMHOSTALLOC = { PORTABLE: 0x01, DEVICEMAP: 0x02, WRITECOMBINED: 0x04 } as const;
/** cuMemHostRegister flags. */
export const CU_MEMHOSTREGISTER = { PORTABLE: 0x01, DEVICEMAP: 0x02, IOMEMORY: 0x04, READ_ONLY: 0x08 } as const;

/** A failed CUDA driver call. */
export class CudaError extends HardwareProbeError {
  constructor(readonly call: string, readonly code: number, readonly errorName: string, text: string) {
    super(`${call} failed: ${errorName} (${code}): ${text}`);
  }
}

const DECLS = {
  cuInit: { args: ["u32"], result: "i32" },
  cuDriverGetVersion: { args: ["buffer"], result: "i32" },
  cuGetErrorString: { args: ["i32", "buffer"], result: "i32" },
  cuGetErrorName: { args: ["i32", "buffer"], result: "i32" },
  cuDeviceGetCount: { args: ["buffer"], result: "i32" },
  cuDeviceGet: { args: ["buffer", "i32"], result: "i32" },
  cuDeviceGetName: { args: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceGetAttribute: { args: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceTotalMem_v2: { args: ["buffer", "i32"], result: "i32" },
  cuDevicePrimaryCtxRetain: { args: ["buffer", "i32"], result: "i32" },
  cuDevicePrimaryCtxRelease_v2: { args: ["i32"], result: "i32" },
  cuCtxSetCurrent: { args: ["ptr"], result: "i32" },
  cuCtxSynchronize: { args: [], result: "i32" },
  cuMemGetInfo_v2: { args: ["buffer", "buffer"], result: "i32" },
  cuMemAlloc_v2: { args: ["buffer", "u64"], result: "i32" },
  cuMemFree_v2: { args: ["u64"], result: "i32" },
  cuMemsetD8_v2: { args: ["u64", "u8", "u64"], result: "i32" },
  cuMemHostAlloc: { args: ["buffer", "u64", "u32"], result: "i32" },
  cuMemFreeHost: { args: ["ptr"], result: "i32" },
  cuMemHostGetDevicePointer_v2: { args: ["buffer", "ptr", "u32"], result: "i32" },
  cuMemHostRegister_v2: { args: ["ptr", "u64", "u32"], result: "i32" },
  cuMemHostUnregister: { args: ["ptr"], result: "i32" },
  cuMemcpyHtoD_v2: { args: ["u64", "ptr", "u64"], result: "i32" },
  cuMemcpyDtoH_v2: { args: ["ptr", "u64", "u64"], result: "i32" },
  cuModuleLoadData: { args: ["buffer", "cstring"], result: "i32" },
  cuModuleUnload: { args: ["ptr"], result: "i32" },
  cuModuleGetFunction: { args: ["buffer", "ptr", "cstring"], result: "i32" },
  cuLaunchKernel: {
    args: ["ptr", "u32", "u32", "u32", "u32", "u32", "u32", "u32", "ptr", "buffer", "ptr"],
    result: "i32",
  },
  cuEventCreate: { args: ["buffer", "u32"], result: "i32" },
  cuEventRecord: { args: ["ptr", "ptr"], result: "i32" },
  cuEventSynchronize: { args: ["ptr"], result: "i32" },
  cuEventDestroy_v2: { args: ["ptr"], result: "i32" },
} as const;

// cuEventElapsedTime_v2 exists from CUDA 12.8 on; older drivers only have the original.
const ELAPSED_V2 = { cuEventElapsedTime_v2: { args: ["buffer", "ptr", "ptr"], result: "i32" } } as const;
const ELAPSED_V1 = { cuEventElapsedTime: { args: ["buffer", "ptr", "ptr"], result: "i32" } } as const;

/** One kernel argument: its C type and value (pointers and 64-bit integers as bigint). */
export type KernelArg =
  | { type: "ptr" | "u64" | "i64"; value: bigint }
  | { type: "u32" | "i32" | "f32"; value: number };

/** The CUDA driver, with checked calls. Handles (context, module, function, event) are bigint. */
export interface Cuda {
  readonly ffi: Ffi;
  /** Path or soname the driver was opened from. */
  readonly path: string;
  init(): void;
  /** CUDA version the driver supports, e.g. 13000. */
  driverVersion(): number;
  deviceCount(): number;
  device(ordinal: number): number;
  deviceName(dev: number): string;
  attribute(dev: number, attr: number): number;
  totalMem(dev: number): number;
  /** Retain the device's primary context and make it current. */
  primaryCtxRetain(dev: number): bigint;
  primaryCtxRelease(dev: number): void;
  ctxSynchronize(): void;
  memGetInfo(): { free: number; total: number };
  memAlloc(bytes: number): bigint;
  memFree(dptr: bigint): void;
  memsetD8(dptr: bigint, value: number, bytes: number): void;
  memHostAlloc(bytes: number, flags: number): bigint;
  memFreeHost(p: bigint): void;
  memHostGetDevicePointer(p: bigint): bigint;
  memHostRegister(p: bigint, bytes: number, flags: number): void;
  memHostUnregister(p: bigint): void;
  memcpyHtoD(dst: bigint, src: bigint, bytes: number): void;
  memcpyDtoH(dst: bigint, src: bigint, bytes: number): void;
  /** Load a module from PTX text (JIT-compiled by the driver) or a cubin passed as text. */
  moduleLoadData(image: string): bigint;
  moduleUnload(mod: bigint): void;
  moduleGetFunction(mod: bigint, name: string): bigint;
  launchKernel(
    fn: bigint,
    grid: [number, number, number],
    block: [number, number, number],
    sharedBytes: number,
    stream: bigint,
    args: KernelArg[],
  ): void;
  eventCreate(flags?: number): bigint;
  eventRecord(ev: bigint, stream?: bigint): void;
  eventSynchronize(ev: bigint): void;
  /** Milliseconds between two recorded events. */
  eventElapsedMs(start: bigint, end: bigint): number;
  eventDestroy(ev: bigint): void;
  /** `CUDA_ERROR_X: text` for a CUresult. */
  errorString(code: number): string;
  close(): void;
}

function u64(buf: Uint8Array): bigint {
  return new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
}
function i32(buf: Uint8Array): number {
  return new DataView(buf.buffer, buf.byteOffset, 4).getInt32(0, true);
}
// Out-parameters live in their own ArrayBuffer so the memory is off the JS heap and cannot move.
function out(bytes = 8): Uint8Array {
  return new Uint8Array(new ArrayBuffer(bytes));
}

/**
 * Open the CUDA driver library and bind the calls spillway uses.
 * @param path library path or soname (default `libcuda.so.1`).
 * @throws FfiLoadError when the library or a symbol is missing (no NVIDIA driver).
 */
export async function loadCuda(path = "libcuda.so.1"): Promise<Cuda> {
  const ffi = await loadFfi();
  const lib: NativeLibrary<typeof DECLS> = ffi.open(path, DECLS);
  let elapsed: (o: Uint8Array, a: bigint, b: bigint) => number;
  let elapsedLib: { close(): void };
  try {
    const l2 = ffi.open(path, ELAPSED_V2);
    elapsed = l2.symbols.cuEventElapsedTime_v2;
    elapsedLib = l2;
  } catch {
    const l1 = ffi.open(path, ELAPSED_V1);
    elapsed = l1.symbols.cuEventElapsedTime;
    elapsedLib = l1;
  }
  const s = lib.symbols;

  const nameOf = (code: number): [string, string] => {
    const n = out();
    const t = out();
    const name = s.cuGetErrorName(code, n) === 0 ? ffi.readCString(u64(n)) : `CUresult ${code}`;
    const text = s.cuGetErrorString(code, t) === 0 ? ffi.readCString(u64(t)) : "unknown error";
    return [name, text];
  };
  const check = (call: string, code: number): void => {
    if (code === 0) return;
    const [name, text] = nameOf(code);
    throw new CudaError(call, code, name, text);
  };

  return {
    ffi,
    path,
    init: () => check("cuInit", s.cuInit(0)),
    driverVersion() {
      const o = out(4);
      check("cuDriverGetVersion", s.cuDriverGetVersion(o));
      return i32(o);
    },
    deviceCount() {
      const o = out(4);
      check("cuDeviceGetCount", s.cuDeviceGetCount(o));
      return i32(o);
    },
    device(ordinal) {
      const o = out(4);
      check(`cuDeviceGet(${ordinal})`, s.cuDeviceGet(o, ordinal));
      return i32(o);
    },
    deviceName(dev) {
      const o = out(256);
      check("cuDeviceGetName", s.cuDeviceGetName(o, 256, dev));
      const end = o.indexOf(0);
      return new TextDecoder().decode(o.subarray(0, end < 0 ? o.length : end));
    },
    attribute(dev, attr) {
      const o = out(4);
      check(`cuDeviceGetAttribute(${attr})`, s.cuDeviceGetAttribute(o, attr, dev));
      return i32(o);
    },
    totalMem(dev) {
      const o = out();
      check("cuDeviceTotalMem_v2", s.cuDeviceTotalMem_v2(o, dev));
      return Number(u64(o));
    },
    primaryCtxRetain(dev) {
      const o = out();
      check("cuDevicePrimaryCtxRetain", s.cuDevicePrimaryCtxRetain(o, dev));
      const ctx = u64(o);
      const rc = s.cuCtxSetCurrent(ctx);
      if (rc !== 0) {
        s.cuDevicePrimaryCtxRelease_v2(dev);
        check("cuCtxSetCurrent", rc);
      }
      return ctx;
    },
    primaryCtxRelease: (dev) => check("cuDevicePrimaryCtxRelease_v2", s.cuDevicePrimaryCtxRelease_v2(dev)),
    ctxSynchronize: () => check("cuCtxSynchronize", s.cuCtxSynchronize()),
    memGetInfo() {
      const f = out();
      const t = out();
      check("cuMemGetInfo_v2", s.cuMemGetInfo_v2(f, t));
      return { free: Number(u64(f)), total: Number(u64(t)) };
    },
    memAlloc(bytes) {
      const o = out();
      check(`cuMemAlloc_v2(${bytes} bytes)`, s.cuMemAlloc_v2(o, BigInt(bytes)));
      return u64(o);
    },
    memFree: (d) => check("cuMemFree_v2", s.cuMemFree_v2(d)),
    memsetD8: (d, v, n) => check("cuMemsetD8_v2", s.cuMemsetD8_v2(d, v, BigInt(n))),
    memHostAlloc(bytes, flags) {
      const o = out();
      check(`cuMemHostAlloc(${bytes} bytes)`, s.cuMemHostAlloc(o, BigInt(bytes), flags));
      return u64(o);
    },
    memFreeHost: (p) => check("cuMemFreeHost", s.cuMemFreeHost(p)),
    memHostGetDevicePointer(p) {
      const o = out();
      check("cuMemHostGetDevicePointer_v2", s.cuMemHostGetDevicePointer_v2(o, p, 0));
      return u64(o);
    },
    memHostRegister: (p, n, flags) =>
      check(`cuMemHostRegister_v2(${n} bytes)`, s.cuMemHostRegister_v2(p, BigInt(n), flags)),
    memHostUnregister: (p) => check("cuMemHostUnregister", s.cuMemHostUnregister(p)),
    memcpyHtoD: (d, h, n) => check("cuMemcpyHtoD_v2", s.cuMemcpyHtoD_v2(d, h, BigInt(n))),
    memcpyDtoH: (h, d, n) => check("cuMemcpyDtoH_v2", s.cuMemcpyDtoH_v2(h, d, BigInt(n))),
    moduleLoadData(image) {
      const o = out();
      check("cuModuleLoadData", s.cuModuleLoadData(o, image));
      return u64(o);
    },
    moduleUnload: (m) => check("cuModuleUnload", s.cuModuleUnload(m)),
    moduleGetFunction(mod, name) {
      const o = out();
      check(`cuModuleGetFunction(${name})`, s.cuModuleGetFunction(o, mod, name));
      return u64(o);
    },
    launchKernel(fn, grid, block, sharedBytes, stream, args) {
      // kernelParams is an array of pointers, one per argument, each to that argument's value.
      const values = out(Math.max(8, args.length * 8));
      const dv = new DataView(values.buffer);
      args.forEach((a, i) => {
        switch (a.type) {
          case "ptr":
          case "u64":
            dv.setBigUint64(i * 8, a.value, true);
            break;
          case "i64":
            dv.setBigInt64(i * 8, a.value, true);
            break;
          case "u32":
            dv.setUint32(i * 8, a.value, true);
            break;
          case "i32":
            dv.setInt32(i * 8, a.value, true);
            break;
          case "f32":
            dv.setFloat32(i * 8, a.value, true);
            break;
        }
      });
      const base = ffi.addressOf(values);
      const params = out(Math.max(8, args.length * 8));
      const pv = new DataView(params.buffer);
      args.forEach((_, i) => pv.setBigUint64(i * 8, base + BigInt(i * 8), true));
      check(
        "cuLaunchKernel",
        s.cuLaunchKernel(fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], sharedBytes, stream, params, 0n),
      );
    },
    eventCreate(flags = 0) {
      const o = out();
      check("cuEventCreate", s.cuEventCreate(o, flags));
      return u64(o);
    },
    eventRecord: (ev, stream = 0n) => check("cuEventRecord", s.cuEventRecord(ev, stream)),
    eventSynchronize: (ev) => check("cuEventSynchronize", s.cuEventSynchronize(ev)),
    eventElapsedMs(a, b) {
      const o = out(4);
      check("cuEventElapsedTime", elapsed(o, a, b));
      return new DataView(o.buffer).getFloat32(0, true);
    },
    eventDestroy: (ev) => check("cuEventDestroy_v2", s.cuEventDestroy_v2(ev)),
    errorString(code) {
      const [name, text] = nameOf(code);
      return `${name}: ${text}`;
    },
    close() {
      elapsedLib.close();
      lib.close();
    },
  };
}
