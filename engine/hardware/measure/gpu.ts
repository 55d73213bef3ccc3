/**
 * GPU memory-tier measurements through the CUDA driver API (ffi/cuda.ts): pinned copies both
 * ways, a PTX read kernel over host-mapped memory (zero-copy), over registered malloc'd memory
 * and over VRAM, and the cost of pinning host memory. Every allocation is released in `finally`,
 * also when a step fails.
 * @module
 */
import { readFileSync } from "node:fs";
import { CU_DEVICE_ATTRIBUTE, CU_MEMHOSTALLOC, CU_MEMHOSTREGISTER, type Cuda } from "../../../ffi/cuda.ts";
import { libc, MMAP } from "../../../ffi/libc.ts";
import type { Measured } from "../../../core/types.ts";
import { formatBytes } from "../../../core/bytes.ts";
import { HardwareProbeError } from "../../../core/errors.ts";
import { assetPath } from "./native.ts";
import { readPcieLink } from "./pcie.ts";
import { summarize } from "./stats.ts";

const GiB = 1024 ** 3;
const MAP_ANONYMOUS = 0x20;

/** Sizes and repeats of the GPU measurements. */
export interface GpuBenchOptions {
  device?: number;
  /** Bytes per copy (H2D, D2H); default 1 GiB. */
  copyBytes?: number;
  /** Bytes the kernel reads from host memory; default 1 GiB. */
  hostReadBytes?: number;
  /** Bytes of the VRAM buffer the kernel reads; default 2 GiB. */
  vramBytes?: number;
  /** Bytes pinned per allocation/registration trial; default 1 GiB. */
  pinBytes?: number;
  repeats?: number;
  /** Called before each step, e.g. to print progress. */
  onStep?: (step: string) => void;
  /** PTX text of the read kernel; default engine/hardware/measure/read_kernel.ptx. */
  ptx?: string;
}

/** What the GPU measurements found. */
export interface GpuBenchResult {
  name: string;
  /** CUDA version the driver supports, e.g. "13.0". */
  cudaVersion: string;
  computeCapability: string;
  multiprocessors: number;
  vramBytes: number;
  freeVramBytes: number;
  /** PCI address, e.g. 0000:1b:00.0. */
  pciAddress: string;
  /** PCIe link read from sysfs right after the copies (an idle link trains down), if readable. */
  pcie: { gen: number; width: number } | null;
  measured: {
    h2dGBps: Measured;
    d2hGBps: Measured;
    zeroCopyGBps: Measured;
    registeredZeroCopyGBps: Measured;
    vramGBps: Measured;
    pinnedAllocMsPerGiB: Measured;
    pinnedFreeMsPerGiB: Measured;
    hostRegisterMsPerGiB: Measured;
    hostUnregisterMsPerGiB: Measured;
  };
}

/** The PTX read kernel shipped with spillway. */
export function readKernelPtx(): string {
  return readFileSync(assetPath("read_kernel.ptx"), "utf8");
}

/** What measureGpu's steps share: the driver, the device, the timer, the cleanups and progress. */
interface Session {
  cu: Cuda;
  repeats: number;
  step: (what: string) => void;
  /** Runs `f` at the end (in reverse order), also when a step fails. */
  defer: (f: () => void) => void;
  /** GPU time of `work` in milliseconds, between two events. */
  timeMs: (work: () => void) => number;
}

/** Reads `bytes` at device address `ptr` with the PTX kernel (enough blocks to cover PCIe latency). */
type ReadKernel = (ptr: bigint, bytes: number) => void;

const gbps = (bytes: number, ms: number): number => bytes / (ms / 1000) / 1e9;

/** Name, CUDA version, compute capability, SM count, VRAM and PCI address of `dev`. */
function deviceFacts(cu: Cuda, dev: number): Pick<GpuBenchResult, "name" | "cudaVersion" | "computeCapability" | "multiprocessors" | "vramBytes" | "pciAddress"> {
  const A = CU_DEVICE_ATTRIBUTE;
  const hex = (n: number, w: number) => n.toString(16).padStart(w, "0");
  const v = cu.driverVersion();
  return {
    name: cu.deviceName(dev),
    cudaVersion: `${Math.floor(v / 1000)}.${(v % 1000) / 10}`,
    computeCapability: `${cu.attribute(dev, A.COMPUTE_CAPABILITY_MAJOR)}.${cu.attribute(dev, A.COMPUTE_CAPABILITY_MINOR)}`,
    multiprocessors: cu.attribute(dev, A.MULTIPROCESSOR_COUNT),
    pciAddress: `${hex(cu.attribute(dev, A.PCI_DOMAIN_ID), 4)}:${hex(cu.attribute(dev, A.PCI_BUS_ID), 2)}:${hex(cu.attribute(dev, A.PCI_DEVICE_ID), 2)}.0`,
    vramBytes: cu.totalMem(dev),
  };
}

/** Buffer sizes: what was asked, the device buffers capped to a quarter of the free VRAM. */
function bufferSizes(free: number, opts: GpuBenchOptions): { copyBytes: number; hostReadBytes: number; vramRead: number; pinBytes: number } {
  // Leave most of the free VRAM alone (another process may need it, and the sizes are enough).
  // (Arithmetic, not shifts: JS shifts are 32-bit and would wrap above 2 GiB.)
  const MiB = 1024 * 1024;
  const cap = Math.max(64 * MiB, Math.floor(free / 4 / MiB) * MiB);
  return {
    copyBytes: Math.min(opts.copyBytes ?? GiB, cap),
    hostReadBytes: opts.hostReadBytes ?? GiB,
    vramRead: Math.min(opts.vramBytes ?? 2 * GiB, cap),
    pinBytes: opts.pinBytes ?? GiB,
  };
}

/** Host-to-device and device-to-host copies; the PCIe link is read between them, while it is busy. */
function measureCopies(s: Session, host: bigint, dbuf: bigint, copyBytes: number, pciAddress: string) {
  const { cu, repeats } = s;
  s.step(`host-to-device copy ${formatBytes(copyBytes, "short")} x${repeats}`);
  s.timeMs(() => cu.memcpyHtoD(dbuf, host, copyBytes)); // warm-up
  const h2d = repeatN(repeats, () => gbps(copyBytes, s.timeMs(() => cu.memcpyHtoD(dbuf, host, copyBytes))));
  const pcie = readPcieLink(pciAddress);
  s.step(`device-to-host copy ${formatBytes(copyBytes, "short")} x${repeats}`);
  s.timeMs(() => cu.memcpyDtoH(host, dbuf, copyBytes));
  const d2h = repeatN(repeats, () => gbps(copyBytes, s.timeMs(() => cu.memcpyDtoH(host, dbuf, copyBytes))));
  return { h2d, d2h, pcie };
}

/** Loads the PTX read kernel (the driver JITs it) and returns how to launch it. */
function loadReadKernel(s: Session, ptx: string, multiprocessors: number): ReadKernel {
  const { cu } = s;
  s.step("loading the PTX read kernel (driver JIT)");
  const mod = cu.moduleLoadData(ptx);
  s.defer(() => cu.moduleUnload(mod));
  const fn = cu.moduleGetFunction(mod, "spillway_read");
  const sink = cu.memAlloc(256);
  s.defer(() => cu.memFree(sink));
  // Enough resident threads (2048 per SM) with 4 loads in flight each to cover PCIe latency.
  const grid = multiprocessors * 4;
  return (ptr, bytes) =>
    cu.launchKernel(fn, [grid, 1, 1], [512, 1, 1], 0, 0n, [
      { type: "ptr", value: ptr },
      { type: "u64", value: BigInt(Math.floor(bytes / 16)) },
      { type: "u32", value: 0x5eed1234 },
      { type: "ptr", value: sink },
    ]);
}

/** The kernel reading host-mapped memory over PCIe (zero-copy), then VRAM. */
function measureKernelReads(s: Session, read: ReadKernel, host: bigint, dbuf: bigint, hostReadBytes: number, vramRead: number) {
  const { cu, repeats } = s;
  s.step(`kernel reading host-mapped memory (zero-copy) ${formatBytes(hostReadBytes, "short")} x${repeats}`);
  const hostDev = cu.memHostGetDevicePointer(host);
  s.timeMs(() => read(hostDev, hostReadBytes));
  const zeroCopy = repeatN(repeats, () => gbps(hostReadBytes, s.timeMs(() => read(hostDev, hostReadBytes))));
  s.step(`kernel reading VRAM ${formatBytes(vramRead, "short")} x${repeats}`);
  // One read of VRAM takes well under a millisecond: time several back to back.
  const launches = 10;
  s.timeMs(() => read(dbuf, vramRead));
  const vram = repeatN(repeats, () =>
    gbps(vramRead * launches, s.timeMs(() => {
      for (let i = 0; i < launches; i++) read(dbuf, vramRead);
    }))
  );
  return { zeroCopy, vram };
}

/** What pinning costs: cuMemHostAlloc and cuMemFreeHost of `pinBytes`, in ms per GiB. */
function measurePinnedAlloc(s: Session, pinBytes: number) {
  const { cu, repeats } = s;
  s.step(`pinned allocation ${formatBytes(pinBytes, "short")} x${repeats} (cuMemHostAlloc / cuMemFreeHost)`);
  const allocMs: number[] = [];
  const freeMs: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    const p = cu.memHostAlloc(pinBytes, CU_MEMHOSTALLOC.PORTABLE | CU_MEMHOSTALLOC.DEVICEMAP);
    const t1 = performance.now();
    cu.memFreeHost(p);
    const t2 = performance.now();
    allocMs.push(((t1 - t0) * GiB) / pinBytes);
    freeMs.push(((t2 - t1) * GiB) / pinBytes);
  }
  return { allocMs, freeMs };
}

/** Registering ordinary (mmap'd, touched) memory: cuMemHostRegister/Unregister cost, and the kernel reading it once registered. */
async function measureRegistration(s: Session, read: ReadKernel, pinBytes: number) {
  const { cu, repeats } = s;
  s.step(`registering ${formatBytes(pinBytes, "short")} of ordinary memory x${repeats} (cuMemHostRegister), and reading it from the GPU`);
  const c = await libc();
  const region = c.mmap(0n, pinBytes, MMAP.PROT_READ | MMAP.PROT_WRITE, MMAP.MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region === MMAP.MAP_FAILED || region === 0n) {
    throw new HardwareProbeError(`mmap of ${pinBytes} bytes for the registration test failed: ${c.strerror(c.errno())}`);
  }
  s.defer(() => c.munmap(region, pinBytes));
  // Touch every page first, so the figure is the cost of pinning, not of page faults.
  c.ffi.view(region, pinBytes).fill(1);
  const regMs: number[] = [];
  const unregMs: number[] = [];
  let regRead: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    cu.memHostRegister(region, pinBytes, CU_MEMHOSTREGISTER.PORTABLE | CU_MEMHOSTREGISTER.DEVICEMAP);
    const t1 = performance.now();
    try {
      if (i === 0) {
        const dp = cu.memHostGetDevicePointer(region);
        s.timeMs(() => read(dp, pinBytes));
        regRead = repeatN(repeats, () => gbps(pinBytes, s.timeMs(() => read(dp, pinBytes))));
      }
    } finally {
      const t2 = performance.now();
      cu.memHostUnregister(region);
      unregMs.push(((performance.now() - t2) * GiB) / pinBytes);
    }
    regMs.push(((t1 - t0) * GiB) / pinBytes);
  }
  return { regMs, unregMs, regRead };
}

/**
 * Run all GPU measurements on one device, step by step: device facts, buffers, copies both ways
 * (and the PCIe link), the read kernel over host-mapped memory and VRAM, pinned allocation, and
 * registration. Everything allocated is released in reverse order at the end, also after a failure.
 */
export async function measureGpu(cu: Cuda, opts: GpuBenchOptions = {}): Promise<GpuBenchResult> {
  const ptx = opts.ptx ?? readKernelPtx();
  cu.init();
  if (cu.deviceCount() === 0) throw new HardwareProbeError("the CUDA driver reports no GPU");
  const dev = cu.device(opts.device ?? 0);
  const facts = deviceFacts(cu, dev);

  const cleanups: (() => void)[] = [];
  const defer = (f: () => void) => cleanups.push(f);
  cu.primaryCtxRetain(dev);
  defer(() => cu.primaryCtxRelease(dev));
  try {
    const { free } = cu.memGetInfo();
    const { copyBytes, hostReadBytes, vramRead, pinBytes } = bufferSizes(free, opts);
    const evA = cu.eventCreate();
    defer(() => cu.eventDestroy(evA));
    const evB = cu.eventCreate();
    defer(() => cu.eventDestroy(evB));
    const s: Session = {
      cu,
      repeats: opts.repeats ?? 5,
      step: opts.onStep ?? (() => {}),
      defer,
      timeMs: (work) => {
        cu.eventRecord(evA);
        work();
        cu.eventRecord(evB);
        cu.eventSynchronize(evB);
        return cu.eventElapsedMs(evA, evB);
      },
    };

    s.step(`pinned host buffer ${formatBytes(Math.max(copyBytes, hostReadBytes), "short")}, VRAM buffer ${formatBytes(Math.max(copyBytes, vramRead), "short")}`);
    const hostBytes = Math.max(copyBytes, hostReadBytes);
    const host = cu.memHostAlloc(hostBytes, CU_MEMHOSTALLOC.PORTABLE | CU_MEMHOSTALLOC.DEVICEMAP);
    defer(() => cu.memFreeHost(host));
    const devBytes = Math.max(copyBytes, vramRead);
    const dbuf = cu.memAlloc(devBytes);
    defer(() => cu.memFree(dbuf));
    cu.memsetD8(dbuf, 1, devBytes);
    cu.ffi.view(host, hostBytes).fill(1);

    const copies = measureCopies(s, host, dbuf, copyBytes, facts.pciAddress);
    const read = loadReadKernel(s, ptx, facts.multiprocessors);
    const reads = measureKernelReads(s, read, host, dbuf, hostReadBytes, vramRead);
    const pinned = measurePinnedAlloc(s, pinBytes);
    const registered = await measureRegistration(s, read, pinBytes);
    cu.ctxSynchronize();
    return {
      ...facts,
      freeVramBytes: free,
      pcie: copies.pcie,
      measured: {
        h2dGBps: summarize(copies.h2d, "GB/s"),
        d2hGBps: summarize(copies.d2h, "GB/s"),
        zeroCopyGBps: summarize(reads.zeroCopy, "GB/s"),
        registeredZeroCopyGBps: summarize(registered.regRead, "GB/s"),
        vramGBps: summarize(reads.vram, "GB/s"),
        pinnedAllocMsPerGiB: summarize(pinned.allocMs, "ms/GiB"),
        pinnedFreeMsPerGiB: summarize(pinned.freeMs, "ms/GiB"),
        hostRegisterMsPerGiB: summarize(registered.regMs, "ms/GiB"),
        hostUnregisterMsPerGiB: summarize(registered.unregMs, "ms/GiB"),
      },
    };
  } finally {
    // Release in reverse order; keep going past a failing release so nothing else leaks.
    let first: unknown;
    for (const f of cleanups.reverse()) {
      try {
        f();
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) opts.onStep?.(`warning: cleanup: ${(first as Error).message}`);
  }
}

function repeatN(n: number, f: () => number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(f());
  return out;
}
