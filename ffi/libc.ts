/**
 * libc bindings over the FFI core: what the kernel-module client and the probes need.
 * Variadic calls (ioctl, syscall) are declared with fixed arity.
 *
 * @example
 * ```ts
 * import { libc } from "./libc.ts";
 * const c = await libc();
 * console.log(c.getpid());
 * ```
 *
 * @module
 */
import { loadFfi } from "./mod.ts";
import type { Ffi } from "./types.ts";

/** x86-64 syscall numbers used through `syscall`. */
export const SYS = { finit_module: 313n, delete_module: 176n } as const;

/** open(2) flags (Linux, x86-64 / generic). */
export const O = { RDONLY: 0, WRONLY: 1, RDWR: 2, CREAT: 0o100, EXCL: 0o200, TRUNC: 0o1000, CLOEXEC: 0o2000000, DIRECT: 0o40000 } as const;

/** mmap protections and flags. */
export const MMAP = { PROT_READ: 1, PROT_WRITE: 2, MAP_SHARED: 1, MAP_PRIVATE: 2, MAP_FAILED: 0xffffffffffffffffn } as const;

const DECLS = {
  open: { args: ["cstring", "i32", "u32"], result: "i32" },
  close: { args: ["i32"], result: "i32" },
  read: { args: ["i32", "buffer", "u64"], result: "i64" },
  ioctl: { args: ["i32", "u64", "buffer"], result: "i32" },
  mmap: { args: ["ptr", "u64", "i32", "i32", "i32", "i64"], result: "ptr" },
  munmap: { args: ["ptr", "u64"], result: "i32" },
  syscall: { args: ["i64", "i64", "i64", "i64"], result: "i64" },
  getpid: { args: [], result: "i32" },
  strerror: { args: ["i32"], result: "ptr" },
} as const;

/** libc functions with a JS-friendly surface; failing calls return -1 (or MAP_FAILED) as in C. */
export interface Libc {
  readonly ffi: Ffi;
  open(path: string, flags: number, mode?: number): number;
  close(fd: number): number;
  read(fd: number, buf: Uint8Array, count?: number): number;
  /** ioctl with a pointer argument (the usual form for struct-passing ioctls). */
  ioctl(fd: number, request: bigint | number, arg: Uint8Array | null): number;
  mmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number): bigint;
  munmap(addr: bigint, length: number): number;
  syscall(number: bigint, a?: bigint, b?: bigint, c?: bigint): bigint;
  getpid(): number;
  /** errno of the last failed call. */
  errno(): number;
  /** The C library's text for an errno value. */
  strerror(errno: number): string;
}

let cached: Promise<Libc> | undefined;

/** Open libc once and return its bindings. */
export function libc(): Promise<Libc> {
  cached ??= (async () => {
    const ffi = await loadFfi();
    const s = ffi.open("libc.so.6", DECLS).symbols;
    return {
      ffi,
      open: (path, flags, mode = 0) => s.open(path, flags, mode),
      close: (fd) => s.close(fd),
      read: (fd, buf, count = buf.length) => Number(s.read(fd, buf, BigInt(count))),
      ioctl: (fd, request, arg) => s.ioctl(fd, BigInt(request), arg),
      mmap: (addr, length, prot, flags, fd, offset) => s.mmap(addr, BigInt(length), prot, flags, fd, BigInt(offset)),
      munmap: (addr, length) => s.munmap(addr, BigInt(length)),
      syscall: (n, a = 0n, b = 0n, c = 0n) => s.syscall(n, a, b, c),
      getpid: () => s.getpid(),
      errno: () => ffi.errno(),
      strerror: (e) => ffi.readCString(s.strerror(e)),
    };
  })();
  return cached;
}

/** errno names for the values spillway decodes. */
export const ERRNO: Readonly<Record<number, string>> = {
  1: "EPERM", 2: "ENOENT", 9: "EBADF", 12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 16: "EBUSY",
  17: "EEXIST", 19: "ENODEV", 22: "EINVAL", 25: "ENOTTY", 38: "ENOSYS", 95: "EOPNOTSUPP",
};
