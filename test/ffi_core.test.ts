// FFI core tests: they cross into real native code (a gcc-built fixture and libc) on whichever
// runtime runs them: koffi on Node, bun:ffi on Bun, Deno.dlopen on Deno.
import { test } from "node:test";
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { currentRuntime, loadFfi } from "../ffi/mod.ts";
import { libc, MMAP, O } from "../ffi/libc.ts";
import { defineStruct } from "../ffi/struct.ts";
import { FfiLoadError } from "../core/errors.ts";
import { assert, assertEquals, assertGreater, assertStrictEquals, assertThrows } from "./_assert.ts";
import { buildC } from "./_native.ts";

const FIXTURE = {
  fx_add_i32: { args: ["i32", "i32"], result: "i32" },
  fx_mul_u64: { args: ["u64", "u64"], result: "u64" },
  fx_neg_i64: { args: ["i64"], result: "i64" },
  fx_half: { args: ["f64"], result: "f64" },
  fx_fill: { args: ["buffer", "u32", "u8"], result: "u32" },
  fx_get_info: { args: ["buffer", "i32"], result: "i32" },
  fx_static_buffer: { args: [], result: "ptr" },
  fx_sum: { args: ["ptr", "u32"], result: "u32" },
  fx_greeting: { args: [], result: "ptr" },
  fx_strlen: { args: ["cstring"], result: "u32" },
} as const;

const Info = defineStruct("fx_info", 24, {
  magic: { offset: 0, type: "u32" },
  count: { offset: 4, type: "i32" },
  total: { offset: 8, type: "u64" },
  flags: { offset: 16, type: "u16", count: 3 },
});

async function fixture() {
  const path = buildC("libffi_fixture.so", ["test/fixtures/ffi_fixture.c"], ["-shared", "-fPIC"]);
  return (await loadFfi()).open(path, FIXTURE);
}

test("ffi: the backend matches the runtime", async () => {
  const ffi = await loadFfi();
  const expected = { node: "koffi", bun: "bun", deno: "deno" }[currentRuntime()];
  assertEquals(ffi.backend, expected);
});

test("ffi: integer, float and 64-bit calls into a C fixture", async () => {
  const lib = await fixture();
  assertStrictEquals(lib.symbols.fx_add_i32(40, 2), 42);
  assertStrictEquals(lib.symbols.fx_add_i32(-5, 3), -2);
  assertStrictEquals(lib.symbols.fx_mul_u64(3_000_000_000n, 7n), 21_000_000_000n);
  assertStrictEquals(lib.symbols.fx_neg_i64(9_007_199_254_740_993n), -9_007_199_254_740_993n);
  assertStrictEquals(lib.symbols.fx_half(5), 2.5);
  lib.close();
});

test("ffi: buffer argument filled by C", async () => {
  const lib = await fixture();
  const buf = new Uint8Array(300);
  assertStrictEquals(lib.symbols.fx_fill(buf, 300, 250), 300);
  assertEquals(Array.from(buf.subarray(0, 8)), [250, 251, 252, 253, 254, 255, 0, 1]);
  assertStrictEquals(buf[299], (250 + 299) & 0xff);
  lib.close();
});

test("ffi: out-struct decoded through an explicit layout", async () => {
  const lib = await fixture();
  const bytes = new Uint8Array(Info.size);
  assertStrictEquals(lib.symbols.fx_get_info(bytes, 77), 0);
  assertEquals(Info.decode(bytes), { magic: 0x5350494c, count: 77, total: 77n * 1000000007n, flags: [1, 2, 3] });
  assertStrictEquals(lib.symbols.fx_get_info(null, 1), -1);
  lib.close();
});

test("ffi: read, view and write through a pointer; strings both ways", async () => {
  const ffi = await loadFfi();
  const lib = await fixture();
  const p = lib.symbols.fx_static_buffer();
  assert(typeof p === "bigint" && p !== 0n, "pointer is a non-null bigint");
  ffi.write(p, new Uint8Array([1, 2, 3, 4]));
  assertStrictEquals(lib.symbols.fx_sum(p, 4), 10);
  const view = ffi.view(p, 8);
  view[4] = 100; // a live view writes native memory
  assertStrictEquals(lib.symbols.fx_sum(p, 5), 110);
  assertEquals(Array.from(ffi.read(p, 5)), [1, 2, 3, 4, 100]);
  assertStrictEquals(ffi.readCString(lib.symbols.fx_greeting()), "hello from C");
  assertStrictEquals(lib.symbols.fx_strlen("spillway"), 8);
  const arr = new Uint8Array([5, 6, 7]);
  assertStrictEquals(lib.symbols.fx_sum(ffi.addressOf(arr), 3), 18);
  lib.close();
});

test("ffi: a missing library names its path", async () => {
  const ffi = await loadFfi();
  const path = "/nonexistent/dir/libmissing-spillway.so";
  const e = assertThrows(() => ffi.open(path, { f: { args: [], result: "void" } }), FfiLoadError, path);
  assert(e.message.length > `cannot load native library ${path}: `.length, "carries the loader's message");
});

test("ffi: a missing symbol names the library", async () => {
  const ffi = await loadFfi();
  assertThrows(() => ffi.open("libc.so.6", { no_such_symbol_spillway: { args: [], result: "i32" } }), FfiLoadError, "libc.so.6");
});

test("libc: getpid equals the process id", async () => {
  const c = await libc();
  assertStrictEquals(c.getpid(), process.pid);
});

test("libc: ioctl FIONREAD on a file, mmap a file and read its bytes", async () => {
  const c = await libc();
  const dir = mkdtempSync(join(tmpdir(), "spillway-ffi-"));
  try {
    const file = join(dir, "data.bin");
    const content = new Uint8Array(8192).map((_, i) => (i * 7) & 0xff);
    writeFileSync(file, content);
    const fd = c.open(file, O.RDONLY | O.CLOEXEC);
    assertGreater(fd, -1);
    const FIONREAD = 0x541b;
    const out = new Uint8Array(4);
    assertStrictEquals(c.ioctl(fd, FIONREAD, out), 0);
    assertStrictEquals(new DataView(out.buffer).getInt32(0, true), 8192);
    const addr = c.mmap(0n, 8192, MMAP.PROT_READ, MMAP.MAP_SHARED, fd, 0);
    assert(addr !== MMAP.MAP_FAILED, `mmap failed: errno ${c.errno()}`);
    const view = c.ffi.view(addr, 8192);
    assertEquals(view[0], 0);
    assertEquals(view[4097], (4097 * 7) & 0xff);
    assertEquals(c.ffi.read(addr, 8192), content);
    assertStrictEquals(c.munmap(addr, 8192), 0);
    const buf = new Uint8Array(16);
    assertStrictEquals(c.read(fd, buf), 16);
    assertEquals(buf, content.subarray(0, 16));
    assertStrictEquals(c.close(fd), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("libc: a failing open reports ENOENT through errno", async () => {
  const c = await libc();
  assertStrictEquals(c.open("/nonexistent/spillway/file", O.RDONLY), -1);
  assertStrictEquals(c.errno(), 2);
  assertStrictEquals(c.strerror(2), "No such file or directory");
});

test("libc: ioctl on a bad fd gives EBADF; syscall reaches the kernel", async () => {
  const c = await libc();
  assertStrictEquals(c.ioctl(-1, 0x541b, new Uint8Array(4)), -1);
  assertStrictEquals(c.errno(), 9);
  // SYS_getpid (39) through the variadic syscall() declared with fixed arity.
  assertStrictEquals(c.syscall(39n), BigInt(process.pid));
  // delete_module of a module that is not loaded: ENOENT (or EPERM without CAP_SYS_MODULE).
  const name = new TextEncoder().encode("spillway_not_loaded\0");
  assertStrictEquals(c.syscall(176n, c.ffi.addressOf(name), 0n), -1n);
  // ENOSYS where a sandbox filters the call.
  assert([1, 2, 38].includes(c.errno()), `errno ${c.errno()}`);
});

test("struct: layouts reject overlaps and misalignment", () => {
  assertThrows(() => defineStruct("bad", 8, { a: { offset: 0, type: "u64" }, b: { offset: 4, type: "u32" } }), RangeError, "overlaps");
  assertThrows(() => defineStruct("bad", 8, { a: { offset: 2, type: "u32" } }), RangeError, "misaligned");
  assertThrows(() => defineStruct("bad", 4, { a: { offset: 0, type: "u64" } }), RangeError, "outside");
});

test("assert helpers: assertThrows returns the error and checks class and text", () => {
  const e = assertThrows(() => { throw new TypeError("bad value x"); }, TypeError, "value");
  assertStrictEquals(e.message, "bad value x");
  assertThrows(() => assertThrows(() => { throw new Error("x"); }, TypeError));
  assertThrows(() => assertThrows(() => {}));
  assertThrows(() => assertEquals({ a: 1 }, { a: 2 }));
});
