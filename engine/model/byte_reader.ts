/**
 * Sequential little-endian reader over the start of a file, reading it in chunks on demand, so a
 * header is parsed without reading the tensor data behind it (a 30 GB file costs a few MB of I/O).
 *
 * @module
 */

import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { ModelFileError } from "../../core/errors.ts";

const MIN_CHUNK = 1 << 20;

/** Reads a file front to back with bounds checks; every short read is a ModelFileError naming the file. */
export class ByteReader {
  /** Path of the file, for error messages. */
  readonly path: string;
  /** Size of the file in bytes. */
  readonly size: number;
  #fd: number;
  #buf: Uint8Array = new Uint8Array(0);
  #view: DataView = new DataView(new ArrayBuffer(0));
  /** File offset of #buf[0]. */
  #bufStart = 0;
  /** Valid bytes in #buf. */
  #bufLen = 0;
  #pos = 0;
  /** What is being read, for truncation messages. */
  context = "header";
  #decoder = new TextDecoder("utf-8", { fatal: false });

  /** Opens `path` for reading; throws ModelFileError when it cannot. */
  constructor(path: string) {
    this.path = path;
    try {
      this.#fd = openSync(path, "r");
    } catch (e) {
      const code = (e as { code?: string }).code;
      throw new ModelFileError(path, code === "ENOENT" ? "file not found" : `cannot open: ${(e as Error).message}`, {
        cause: e,
      });
    }
    try {
      const st = fstatSync(this.#fd);
      if (st.isDirectory()) throw new ModelFileError(path, "is a directory, expected a model file");
      this.size = st.size;
    } catch (e) {
      closeSync(this.#fd);
      throw e;
    }
  }

  /** Current absolute file offset. */
  get pos(): number {
    return this.#pos;
  }

  /** Bytes between the current offset and the end of the file. */
  get remaining(): number {
    return this.size - this.#pos;
  }

  /** Closes the file; safe to call twice. */
  close(): void {
    if (this.#fd >= 0) {
      closeSync(this.#fd);
      this.#fd = -1;
    }
  }

  /** Makes `n` bytes at the current offset available in the buffer, or throws a truncation error. */
  #ensure(n: number): number {
    const rel = this.#pos - this.#bufStart;
    if (rel >= 0 && rel + n <= this.#bufLen) return rel;
    if (this.#pos + n > this.size) {
      throw new ModelFileError(
        this.path,
        `truncated ${this.context}: needs ${n} bytes at offset ${this.#pos} but the file ends at ${this.size}`,
      );
    }
    // Keep nothing before #pos; read at least MIN_CHUNK (or the rest of the file) to amortize syscalls.
    const want = Math.min(Math.max(n, MIN_CHUNK, this.#buf.length), this.size - this.#pos);
    if (this.#buf.length < want) {
      this.#buf = new Uint8Array(Math.max(want, this.#buf.length * 2));
      this.#view = new DataView(this.#buf.buffer);
    }
    let got = 0;
    while (got < want) {
      const r = readSync(this.#fd, this.#buf, got, want - got, this.#pos + got);
      if (r <= 0) break;
      got += r;
    }
    this.#bufStart = this.#pos;
    this.#bufLen = got;
    if (got < n) {
      throw new ModelFileError(this.path, `truncated ${this.context}: short read at offset ${this.#pos}`);
    }
    return 0;
  }

  /** Moves the offset forward by `n` bytes (reading nothing when beyond the buffer). */
  skip(n: number): void {
    if (this.#pos + n > this.size) {
      throw new ModelFileError(
        this.path,
        `truncated ${this.context}: needs ${n} bytes at offset ${this.#pos} but the file ends at ${this.size}`,
      );
    }
    this.#pos += n;
  }

  /** Sets the absolute offset. */
  seek(pos: number): void {
    this.#pos = pos;
  }

  u8(): number {
    const r = this.#ensure(1);
    this.#pos += 1;
    return this.#buf[r];
  }
  i8(): number {
    const r = this.#ensure(1);
    this.#pos += 1;
    return this.#view.getInt8(r);
  }
  u16(): number {
    const r = this.#ensure(2);
    this.#pos += 2;
    return this.#view.getUint16(r, true);
  }
  i16(): number {
    const r = this.#ensure(2);
    this.#pos += 2;
    return this.#view.getInt16(r, true);
  }
  u32(): number {
    const r = this.#ensure(4);
    this.#pos += 4;
    return this.#view.getUint32(r, true);
  }
  i32(): number {
    const r = this.#ensure(4);
    this.#pos += 4;
    return this.#view.getInt32(r, true);
  }
  f32(): number {
    const r = this.#ensure(4);
    this.#pos += 4;
    return this.#view.getFloat32(r, true);
  }
  f64(): number {
    const r = this.#ensure(8);
    this.#pos += 8;
    return this.#view.getFloat64(r, true);
  }
  u64(): bigint {
    const r = this.#ensure(8);
    this.#pos += 8;
    return this.#view.getBigUint64(r, true);
  }
  i64(): bigint {
    const r = this.#ensure(8);
    this.#pos += 8;
    return this.#view.getBigInt64(r, true);
  }

  /** A u64 that must fit a JS number (counts, lengths, offsets); `what` names it in the error. */
  u64n(what: string): number {
    const r = this.#ensure(8);
    // Two u32 halves: no BigInt on the hot path (one length prefix per string).
    const lo = this.#view.getUint32(r, true);
    const hi = this.#view.getUint32(r + 4, true);
    if (hi > 0x1fffff) {
      throw new ModelFileError(this.path, `${what} at offset ${this.#pos} is ${this.#view.getBigUint64(r, true)}, too large to be valid`);
    }
    this.#pos += 8;
    return hi * 4294967296 + lo;
  }

  /** `n` raw bytes (a copy). */
  bytes(n: number): Uint8Array {
    const r = this.#ensure(n);
    this.#pos += n;
    return this.#buf.slice(r, r + n);
  }

  /** `n` bytes decoded as UTF-8. */
  utf8(n: number): string {
    if (n === 0) return "";
    const r = this.#ensure(n);
    this.#pos += n;
    return this.#decoder.decode(this.#buf.subarray(r, r + n));
  }
}
