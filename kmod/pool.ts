/**
 * Client of /dev/spillway: allocate pinned, accounted host memory as DMA-BUF file descriptors,
 * map them, read the pool's state, set its limit. Every failure is a {@linkcode KernelModuleError}
 * with the errno decoded.
 *
 * @example
 * ```ts
 * import { Pool } from "./pool.ts";
 * const pool = await Pool.open();
 * const buf = pool.alloc(8 * 1024 * 1024);
 * const map = pool.map(buf);
 * map.view.fill(1);
 * map.unmap();
 * buf.close();
 * console.log(pool.info().usedBytes); // 0
 * pool.close();
 * ```
 *
 * @module
 */
import { KernelModuleError } from "../core/errors.ts";
import { libc, type Libc, MMAP, O } from "../ffi/libc.ts";
import { kmodError } from "./errno.ts";
import { NOT_LOADED_MESSAGE } from "./loader.ts";
import {
  Alloc,
  ALLOC_FALLBACK,
  CHUNK_SIZE,
  DEVICE_PATH,
  IOC,
  MAX_ALLOC_BYTES,
  PoolInfo as PoolInfoStruct,
  PRESSURE_NAMES,
  SetLimit,
  UAPI_VERSION_MAJOR,
  Version,
} from "./uapi.ts";

/** A DMA-BUF from the pool; the memory goes back when the fd and every mapping are closed. */
export interface PoolBuffer {
  /** The DMA-BUF file descriptor (O_CLOEXEC). */
  readonly fd: number;
  /** Bytes. */
  readonly size: number;
  /** Buffer id, as sysfs pool_info lists it. */
  readonly id: bigint;
  /** Physically contiguous chunks backing it. */
  readonly chunks: number;
  /** Smallest chunk order (9 = 2 MiB) used. */
  readonly minOrder: number;
  /** Close the fd (idempotent). */
  close(): void;
}

/** A shared, cached CPU mapping of a buffer. */
export interface Mapping {
  readonly addr: bigint;
  readonly length: number;
  /** Live bytes of the mapping; must not be used after unmap(). */
  readonly view: Uint8Array;
  /** munmap (idempotent). */
  unmap(): void;
}

/** The pool's state (POOL_INFO). */
export interface PoolInfo {
  readonly limitBytes: number;
  readonly usedBytes: number;
  readonly peakBytes: number;
  readonly buffers: number;
  readonly allocsTotal: number;
  readonly freesTotal: number;
  readonly failedTotal: number;
  readonly memAvailableBytes: number;
  readonly pressure: "none" | "moderate" | "critical";
  readonly pressureEvents: number;
  /** Live chunks per page order (index = order; 9 is 2 MiB). */
  readonly chunksByOrder: readonly number[];
}

/** What the module speaks (VERSION). */
export interface VersionInfo {
  readonly version: number;
  readonly major: number;
  readonly minor: number;
  readonly chunkSize: number;
  readonly maxAllocBytes: bigint;
  readonly debugIoctls: boolean;
}

/** Options of {@linkcode Pool.alloc}. */
export interface AllocOptions {
  /** Accept chunks below 2 MiB when 2 MiB pages are not available. */
  fallback?: boolean;
}

/** Round a byte count up to the allocation granule (2 MiB). */
export function alignToChunk(bytes: number): number {
  return Math.ceil(bytes / CHUNK_SIZE) * CHUNK_SIZE;
}

/**
 * Check an allocation size before asking the kernel.
 * @throws KernelModuleError (errno EINVAL) unless size is a positive multiple of 2 MiB up to the maximum.
 */
export function checkAllocSize(size: number): void {
  if (!Number.isSafeInteger(size) || size <= 0 || size % CHUNK_SIZE !== 0 || BigInt(size) > MAX_ALLOC_BYTES) {
    throw new KernelModuleError(
      `alloc: size ${size} must be a positive multiple of ${CHUNK_SIZE} (2 MiB) up to ${MAX_ALLOC_BYTES}; ` +
        "round up with alignToChunk()",
      22,
    );
  }
}

/**
 * Map `length` bytes of an fd (MAP_SHARED) and expose them as a live Uint8Array.
 * @throws KernelModuleError with the decoded errno.
 */
export function mapFd(c: Libc, fd: number, length: number, offset = 0, writable = true): Mapping {
  const prot = MMAP.PROT_READ | (writable ? MMAP.PROT_WRITE : 0);
  const addr = c.mmap(0n, length, prot, MMAP.MAP_SHARED, fd, offset);
  if (addr === MMAP.MAP_FAILED || addr === 0n) {
    throw kmodError(c, `mmap of fd ${fd} (${length} bytes at offset ${offset})`, c.errno(), {
      22: "length/offset outside the buffer, or not page aligned",
      13: "the fd is not open for writing",
    });
  }
  let mapped = true;
  return {
    addr,
    length,
    view: c.ffi.view(addr, length),
    unmap() {
      if (!mapped) return;
      mapped = false;
      c.munmap(addr, length);
    },
  };
}

const num = (v: bigint): number => Number(v);

/** An open /dev/spillway. */
export class Pool {
  #fd: number;
  readonly #c: Libc;
  /** The device path this pool was opened from. */
  readonly path: string;

  private constructor(c: Libc, fd: number, path: string) {
    this.#c = c;
    this.#fd = fd;
    this.path = path;
  }

  /**
   * Open the device and check the module's uapi major version.
   * @throws KernelModuleError: not loaded, no permission, not a spillway device, incompatible version.
   */
  static async open(path: string = DEVICE_PATH): Promise<Pool> {
    const c = await libc();
    const fd = c.open(path, O.RDWR | O.CLOEXEC);
    if (fd < 0) {
      const e = c.errno();
      throw kmodError(c, `opening ${path}`, e, {
        2: path === DEVICE_PATH ? NOT_LOADED_MESSAGE : `${path} does not exist`,
        13: `no permission: ${path} is mode 0660; add the user to its group (module parameter group=<gid>)`,
        6: NOT_LOADED_MESSAGE,
        19: NOT_LOADED_MESSAGE,
      });
    }
    const pool = new Pool(c, fd, path);
    try {
      const v = pool.version();
      if (v.major !== UAPI_VERSION_MAJOR) {
        throw new KernelModuleError(
          `${path}: the module speaks uapi ${v.major}.${v.minor}, this client ${UAPI_VERSION_MAJOR}.x: ` +
            "load the module built from this spillway version",
        );
      }
    } catch (e) {
      pool.close();
      throw e;
    }
    return pool;
  }

  #ioctl(name: keyof typeof IOC, req: Uint8Array, hints: Readonly<Record<number, string>> = {}): void {
    if (this.#fd < 0) throw new KernelModuleError(`${this.path}: the pool is closed`);
    if (this.#c.ioctl(this.#fd, IOC[name], req) < 0) {
      throw kmodError(this.#c, `${this.path}: ${name}`, this.#c.errno(), {
        25: "not a spillway device, or a module with another uapi (ioctl unknown)",
        ...hints,
      });
    }
  }

  /** The module's uapi version and limits. */
  version(): VersionInfo {
    const req = Version.encode({});
    this.#ioctl("VERSION", req);
    const v = Version.decode(req);
    return {
      version: v.version,
      major: v.version >>> 16,
      minor: v.version & 0xffff,
      chunkSize: num(v.chunk_size),
      maxAllocBytes: v.max_alloc_bytes,
      debugIoctls: v.debug_ioctls === 1,
    };
  }

  /**
   * Allocate `size` bytes (a non-zero multiple of 2 MiB; see {@linkcode alignToChunk}).
   * @throws KernelModuleError: bad size (EINVAL), over the pool limit or RLIMIT_MEMLOCK (ENOMEM).
   */
  alloc(size: number, opts: AllocOptions = {}): PoolBuffer {
    checkAllocSize(size);
    const req = Alloc.encode({ size: BigInt(size), flags: opts.fallback ? ALLOC_FALLBACK : 0, fd: -1 });
    this.#ioctl("ALLOC", req, {
      12: `${size} bytes do not fit: the pool limit or this process's RLIMIT_MEMLOCK (ulimit -l) is reached, ` +
        `or 2 MiB pages are short${opts.fallback ? "" : " (try fallback)"}; see spillway kmod status`,
      22: "size or flags rejected by the module",
      9: `${this.path} is open read-only`,
      4: "interrupted",
    });
    const a = Alloc.decode(req);
    const c = this.#c;
    let open = true;
    return {
      fd: a.fd,
      size,
      id: a.buffer_id,
      chunks: a.nr_chunks,
      minOrder: a.min_order,
      close() {
        if (!open) return;
        open = false;
        c.close(a.fd);
      },
    };
  }

  /** Map a buffer (all of it by default) shared and cached. */
  map(buffer: Pick<PoolBuffer, "fd" | "size">, offset = 0, length: number = buffer.size - offset): Mapping {
    return mapFd(this.#c, buffer.fd, length, offset);
  }

  /** The pool's totals, per-order counts, limit, use and pressure (also acknowledges pressure events for poll). */
  info(): PoolInfo {
    const req = PoolInfoStruct.encode({});
    this.#ioctl("POOL_INFO", req);
    const i = PoolInfoStruct.decode(req);
    return {
      limitBytes: num(i.limit_bytes),
      usedBytes: num(i.used_bytes),
      peakBytes: num(i.peak_bytes),
      buffers: num(i.buffers),
      allocsTotal: num(i.allocs_total),
      freesTotal: num(i.frees_total),
      failedTotal: num(i.failed_total),
      memAvailableBytes: num(i.mem_available_bytes),
      pressure: (PRESSURE_NAMES[i.pressure] ?? "critical") as PoolInfo["pressure"],
      pressureEvents: num(i.pressure_events),
      chunksByOrder: i.chunks.map(num),
    };
  }

  /**
   * Set the system-wide pool limit; returns the previous one.
   * @throws KernelModuleError: EPERM without CAP_SYS_ADMIN, EINVAL above the machine's RAM.
   */
  setLimit(bytes: number): number {
    const req = SetLimit.encode({ limit_bytes: BigInt(bytes) });
    this.#ioctl("SET_LIMIT", req, {
      1: "setting the pool limit needs CAP_SYS_ADMIN (root)",
      22: `${bytes} bytes is more than this machine's RAM`,
    });
    return num(SetLimit.decode(req).old_limit_bytes);
  }

  /** Close the device (idempotent). Buffers stay valid: each holds its own reference. */
  close(): void {
    if (this.#fd >= 0) this.#c.close(this.#fd);
    this.#fd = -1;
  }
}
