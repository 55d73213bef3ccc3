/**
 * TypeScript mirror of the spillway kernel module's userspace ABI, `kmod/include/uapi/spillway.h`:
 * constants, struct layouts (explicit offsets) and ioctl numbers computed with the kernel's _IOC
 * encoding. test/kmod_uapi.test.ts compiles a C program against the header and checks every size,
 * offset, constant and ioctl number here against it.
 *
 * @example
 * ```ts
 * import { Alloc, IOC, CHUNK_SIZE } from "./uapi.ts";
 * const req = Alloc.encode({ size: BigInt(4 * CHUNK_SIZE) });
 * console.log(IOC.ALLOC.toString(16), req.length); // c030b701 48
 * ```
 *
 * @module
 */
import { defineStruct, type FieldSpec, type StructLayout, type StructValue } from "../ffi/struct.ts";

/** Major version of the uapi; a module with another major is incompatible. */
export const UAPI_VERSION_MAJOR = 1;
/** Minor version of the uapi; grows when something is only added. */
export const UAPI_VERSION_MINOR = 0;
/** `SPILLWAY_UAPI_VERSION`: major << 16 | minor. */
export const UAPI_VERSION: number = (UAPI_VERSION_MAJOR << 16) | UAPI_VERSION_MINOR;

/** Character device of the module. */
export const DEVICE_PATH = "/dev/spillway";
/** The module's sysfs directory. */
export const SYSFS_DIR = "/sys/class/spillway/spillway";
/** Parameters of the loaded module. */
export const PARAMS_DIR = "/sys/module/spillway/parameters";

/** Buffers are made of chunks of 2^CHUNK_ORDER pages. */
export const CHUNK_ORDER = 9;
/** Bytes per full chunk (2 MiB); allocation sizes are multiples of it. */
export const CHUNK_SIZE: number = 4096 * 2 ** CHUNK_ORDER;
/** Number of per-order counters (orders 0..CHUNK_ORDER). */
export const NR_ORDERS: number = CHUNK_ORDER + 1;
/** Largest single allocation the module accepts. */
export const MAX_ALLOC_BYTES: bigint = 1n << 40n;

/** `spillway_alloc.flags`: allow chunks below 2 MiB when 2 MiB pages cannot be had. */
export const ALLOC_FALLBACK = 1;
/** Every flag this uapi version knows. */
export const ALLOC_FLAGS_ALL: number = ALLOC_FALLBACK;

/** Memory pressure states. */
export const PRESSURE = { NONE: 0, MODERATE: 1, CRITICAL: 2 } as const;
/** Names of the pressure states, as sysfs prints them. */
export const PRESSURE_NAMES: readonly string[] = ["none", "moderate", "critical"];

/** `_IOC` direction bits. */
export const IOC_NONE = 0;
/** Userspace writes (kernel reads). */
export const IOC_WRITE = 1;
/** Userspace reads (kernel writes). */
export const IOC_READ = 2;

/** The kernel's `_IOC(dir, type, nr, size)` (asm-generic layout: x86, arm64, riscv). */
export function ioc(dir: number, type: number, nr: number, size: number): number {
  if (type < 0 || type > 0xff || nr < 0 || nr > 0xff || size < 0 || size > 0x3fff || dir < 0 || dir > 3) {
    throw new RangeError(`_IOC(${dir}, ${type}, ${nr}, ${size}): a field is out of range`);
  }
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}

/** The kernel's `_IOWR(type, nr, struct)`. */
export function iowr(type: number, nr: number, size: number): number {
  return ioc(IOC_READ | IOC_WRITE, type, nr, size);
}

/** `SPILLWAY_IOC_MAGIC`. */
export const IOC_MAGIC = 0xb7;

/** `struct spillway_version` (SPILLWAY_IOC_VERSION). */
export const Version = defineStruct("spillway_version", 40, {
  version: { offset: 0, type: "u32" },
  chunk_order: { offset: 4, type: "u32" },
  chunk_size: { offset: 8, type: "u64" },
  max_alloc_bytes: { offset: 16, type: "u64" },
  debug_ioctls: { offset: 24, type: "u32" },
  pad0: { offset: 28, type: "u32" },
  reserved: { offset: 32, type: "u64" },
});

/** `struct spillway_alloc` (SPILLWAY_IOC_ALLOC). */
export const Alloc = defineStruct("spillway_alloc", 48, {
  size: { offset: 0, type: "u64" },
  flags: { offset: 8, type: "u32" },
  fd: { offset: 12, type: "i32" },
  buffer_id: { offset: 16, type: "u64" },
  nr_chunks: { offset: 24, type: "u32" },
  min_order: { offset: 28, type: "u32" },
  reserved: { offset: 32, type: "u64", count: 2 },
});

/** `struct spillway_pool_info` (SPILLWAY_IOC_POOL_INFO). */
export const PoolInfo = defineStruct("spillway_pool_info", 176, {
  flags: { offset: 0, type: "u32" },
  pressure: { offset: 4, type: "u32" },
  limit_bytes: { offset: 8, type: "u64" },
  used_bytes: { offset: 16, type: "u64" },
  peak_bytes: { offset: 24, type: "u64" },
  buffers: { offset: 32, type: "u64" },
  allocs_total: { offset: 40, type: "u64" },
  frees_total: { offset: 48, type: "u64" },
  failed_total: { offset: 56, type: "u64" },
  mem_available_bytes: { offset: 64, type: "u64" },
  pressure_events: { offset: 72, type: "u64" },
  chunks: { offset: 80, type: "u64", count: 10 },
  reserved: { offset: 160, type: "u64", count: 2 },
});

/** `struct spillway_set_limit` (SPILLWAY_IOC_SET_LIMIT). */
export const SetLimit = defineStruct("spillway_set_limit", 32, {
  limit_bytes: { offset: 0, type: "u64" },
  old_limit_bytes: { offset: 8, type: "u64" },
  reserved: { offset: 16, type: "u64", count: 2 },
});

/** `struct spillway_debug_check` (SPILLWAY_IOC_DEBUG_CHECK, debug_ioctls=1 only). */
export const DebugCheck = defineStruct("spillway_debug_check", 64, {
  fd: { offset: 0, type: "i32" },
  flags: { offset: 4, type: "u32" },
  sg_nents: { offset: 8, type: "u64" },
  sg_bytes: { offset: 16, type: "u64" },
  sg_chunks_ok: { offset: 24, type: "u64" },
  csum_sg: { offset: 32, type: "u64" },
  csum_vmap: { offset: 40, type: "u64" },
  reserved: { offset: 48, type: "u64", count: 2 },
});

/** `struct spillway_debug_pin` (SPILLWAY_IOC_DEBUG_PIN, debug_ioctls=1 only). */
export const DebugPin = defineStruct("spillway_debug_pin", 56, {
  addr: { offset: 0, type: "u64" },
  length: { offset: 8, type: "u64" },
  fd: { offset: 16, type: "i32" },
  flags: { offset: 20, type: "u32" },
  pinned: { offset: 24, type: "i64" },
  matched: { offset: 32, type: "u64" },
  reserved: { offset: 40, type: "u64", count: 2 },
});

/** Every struct of the uapi, by its C name. */
export const STRUCTS: Readonly<Record<string, StructLayout<Record<string, FieldSpec>>>> = {
  spillway_version: Version,
  spillway_alloc: Alloc,
  spillway_pool_info: PoolInfo,
  spillway_set_limit: SetLimit,
  spillway_debug_check: DebugCheck,
  spillway_debug_pin: DebugPin,
};

/** ioctl request numbers, as the header's SPILLWAY_IOC_* macros compute them. */
export const IOC: {
  readonly VERSION: number;
  readonly ALLOC: number;
  readonly POOL_INFO: number;
  readonly SET_LIMIT: number;
  readonly DEBUG_CHECK: number;
  readonly DEBUG_PIN: number;
} = {
  VERSION: iowr(IOC_MAGIC, 0x00, Version.size),
  ALLOC: iowr(IOC_MAGIC, 0x01, Alloc.size),
  POOL_INFO: iowr(IOC_MAGIC, 0x02, PoolInfo.size),
  SET_LIMIT: iowr(IOC_MAGIC, 0x03, SetLimit.size),
  DEBUG_CHECK: iowr(IOC_MAGIC, 0x40, DebugCheck.size),
  DEBUG_PIN: iowr(IOC_MAGIC, 0x41, DebugPin.size),
};

/** Decoded `struct spillway_pool_info`. */
export type PoolInfoValue = StructValue<typeof PoolInfo.fields>;

/** `SPILLWAY_CSUM_INIT`. */
export const CSUM_INIT = 0xcbf29ce484222325n;

/** `spillway_csum()`: FNV-1a over little-endian 64-bit words (bytes.length must be a multiple of 8). */
export function csum(bytes: Uint8Array, init: bigint = CSUM_INIT): bigint {
  if (bytes.length % 8 !== 0) throw new RangeError(`csum: ${bytes.length} bytes is not a multiple of 8`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const mask = (1n << 64n) - 1n;
  let c = init;
  for (let i = 0; i < bytes.length; i += 8) {
    c = ((c ^ dv.getBigUint64(i, true)) * 0x100000001b3n) & mask;
  }
  return c;
}
