/**
 * errno decoding for the kernel-module client: a failed syscall or ioctl becomes a
 * {@linkcode KernelModuleError} whose message names the operation, says what to do, and ends with
 * the errno name and the C library's text.
 *
 * @example
 * ```ts
 * import { errnoName } from "./errno.ts";
 * console.log(errnoName(12)); // ENOMEM
 * ```
 *
 * @module
 */
import { KernelModuleError } from "../core/errors.ts";
import type { Libc } from "../ffi/libc.ts";

/** Linux errno names for the values the module client can meet (x86-64 / generic numbering). */
const NAMES: Readonly<Record<number, string>> = {
  1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 8: "ENOEXEC", 9: "EBADF", 11: "EAGAIN",
  12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 16: "EBUSY", 17: "EEXIST", 19: "ENODEV", 22: "EINVAL",
  24: "EMFILE", 25: "ENOTTY", 28: "ENOSPC", 30: "EROFS", 38: "ENOSYS", 61: "ENODATA", 74: "EBADMSG",
  95: "EOPNOTSUPP", 126: "ENOKEY", 127: "EKEYEXPIRED", 128: "EKEYREVOKED", 129: "EKEYREJECTED",
};

/** The symbolic name of an errno value (`E123` when unknown). */
export function errnoName(errno: number): string {
  return NAMES[errno] ?? `E${errno}`;
}

/**
 * Build the error for a failed call: `<what>: <hint> (<ENAME>: <strerror>)`, or without the hint
 * when `hints` has none for this errno.
 */
export function kmodError(
  c: Libc,
  what: string,
  errno: number,
  hints: Readonly<Record<number, string>> = {},
): KernelModuleError {
  const hint = hints[errno];
  const text = `${errnoName(errno)}: ${c.strerror(errno)}`;
  return new KernelModuleError(hint ? `${what}: ${hint} (${text})` : `${what} failed (${text})`, errno);
}
