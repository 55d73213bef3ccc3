// The kernel-module client on a machine without the module (this one: no module support at all):
// status says so, the loader and pool decode real errnos into clear errors and leave nothing
// open, the build drives make in a copy of the sources, and mappings work through the FFI.
import { test } from "node:test";
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KernelModuleError } from "../core/errors.ts";
import { libc, O } from "../ffi/libc.ts";
import { kmodCommand } from "../commands/kmod.ts";
import {
  buildModule,
  formatParams,
  formatStatus,
  loadModule,
  moduleStatus,
  NOT_LOADED_MESSAGE,
  unloadModule,
} from "../kmod/loader.ts";
import { alignToChunk, checkAllocSize, mapFd, Pool } from "../kmod/pool.ts";
import { DEVICE_PATH, SYSFS_DIR } from "../kmod/uapi.ts";
import { assert, assertEquals, assertMatch, assertRejects, assertStrictEquals, assertStringIncludes, assertThrows } from "./_assert.ts";

const moduleHere = existsSync(SYSFS_DIR) || existsSync(DEVICE_PATH);

function tmp(): string {
  return mkdtempSync(join(tmpdir(), "spillway-kmod-test-"));
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

test("kmod status: says clearly that the module is not loaded", { skip: moduleHere }, async () => {
  const s = moduleStatus();
  assertStrictEquals(s.loaded, false);
  assertStrictEquals(s.message, NOT_LOADED_MESSAGE);
  assertStrictEquals(s.message, "spillway kernel module is not loaded (/dev/spillway and /sys/class/spillway absent)");
  const out: string[] = [];
  const rc = await kmodCommand("status", { print: (l) => out.push(l) });
  assertStrictEquals(rc, 1);
  assertEquals(out, [NOT_LOADED_MESSAGE]);
});

test("kmod status: reads a loaded module's sysfs files", async () => {
  const dir = tmp();
  try {
    const sysfs = join(dir, "class");
    const params = join(dir, "params");
    mkdirSync(sysfs);
    mkdirSync(params);
    const files: Record<string, string> = {
      pool_limit_bytes: "8589934592\n",
      pool_used_bytes: "2147483648\n",
      buffers: "3\n",
      pressure: "moderate\n",
      pool_info: "limit_bytes     8589934592\nbuffer id=7 size=2147483648 chunks=1024 min_order=9 tgid=42 comm=llama locked_pages=0\n",
    };
    for (const [k, v] of Object.entries(files)) writeFileSync(join(sysfs, k), v);
    writeFileSync(join(params, "group"), "4242\n");
    const dev = join(dir, "spillway");
    writeFileSync(dev, "");
    chmodSync(dev, 0o660);
    const s = moduleStatus({ sysfsDir: sysfs, paramsDir: params, devicePath: dev });
    assertStrictEquals(s.loaded, true);
    assertStrictEquals(s.limitBytes, 8589934592);
    assertStrictEquals(s.usedBytes, 2147483648);
    assertStrictEquals(s.buffers, 3);
    assertStrictEquals(s.pressure, "moderate");
    assertEquals(s.params, { group: "4242" });
    assertStrictEquals(s.device.mode, "0660");
    assertStrictEquals(s.message, "spillway kernel module is loaded: 2.00 GiB of 8.00 GiB in 3 buffers, memory pressure moderate");
    const text = formatStatus(s);
    assertStringIncludes(text, "params   group=4242");
    assertStringIncludes(text, "  buffer id=7 size=2147483648");
    const out: string[] = [];
    assertStrictEquals(await kmodCommand("status", { json: true, print: (l) => out.push(l), paths: { sysfsDir: sysfs, paramsDir: params, devicePath: dev } }), 0);
    assertStrictEquals(JSON.parse(out[0]).usedBytes, 2147483648);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("kmod loader: parameters are formatted and checked", () => {
  assertStrictEquals(formatParams({ group: 4242, debug_ioctls: true, pool_limit_bytes: 1n << 30n }), "group=4242 debug_ioctls=1 pool_limit_bytes=1073741824");
  assertStrictEquals(formatParams("  group=1   debug_ioctls=0 "), "group=1 debug_ioctls=0");
  assertStrictEquals(formatParams(), "");
  assertThrows(() => formatParams({ "bad-name": 1 }), KernelModuleError, "bad-name");
  assertThrows(() => formatParams({ group: "1 2" }), KernelModuleError, "space");
});

test("kmod loader: a missing kernel build dir is a clear error", () => {
  const e = assertThrows(() => buildModule({ kernelDir: "/nonexistent/kernel/build", buildDir: join(tmpdir(), "spw-unused") }), KernelModuleError);
  assertStringIncludes(e.message, "/nonexistent/kernel/build not found");
  assertStringIncludes(e.message, "linux-headers-");
});

test("kmod loader: build copies the sources and runs make -C <kernel dir> M=<build>/src", () => {
  const dir = tmp();
  try {
    // a stand-in kernel build dir whose Makefile checks what kbuild would need, then "builds"
    const kdir = join(dir, "kernel");
    mkdirSync(kdir);
    writeFileSync(join(kdir, "Makefile"), [
      "modules:",
      "\ttest -f $(M)/Kbuild && test -f $(M)/main.c && test -f $(M)/../include/uapi/spillway.h",
      "\tgrep -q 'obj-m := spillway.o' $(M)/Kbuild",
      "\techo built > $(M)/spillway.ko",
      "",
    ].join("\n"));
    const buildDir = join(dir, "build");
    const r = buildModule({ kernelDir: kdir, buildDir });
    assertStrictEquals(r.ko, join(buildDir, "src", "spillway.ko"));
    assertStrictEquals(readFileSync(r.ko, "utf8"), "built\n");
    // a failing make: its output is in the error
    writeFileSync(join(kdir, "Makefile"), "modules:\n\t@echo 'error: implicit declaration of function foo' >&2; exit 2\n");
    const e = assertThrows(() => buildModule({ kernelDir: kdir, buildDir }), KernelModuleError);
    assertStringIncludes(e.message, "exited with 2");
    assertStringIncludes(e.message, "implicit declaration of function foo");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("kmod loader: load and unload decode the kernel's errno", async () => {
  await assertRejects(() => loadModule("/nonexistent/spillway.ko"), KernelModuleError, "not found");
  const dir = tmp();
  const before = openFds();
  try {
    const junk = join(dir, "junk.ko");
    writeFileSync(junk, "not an ELF module");
    // here: ENOSYS (no module support) or EPERM; on a root machine with modules: ENOEXEC
    const e = await assertRejects(() => loadModule(junk, { group: 1 }), KernelModuleError);
    assertStringIncludes(e.message, `loading ${junk} (group=1)`);
    assertMatch(e.message, /\((ENOSYS|EPERM|ENOEXEC|EINVAL|EBADMSG|EKEYREJECTED): /);
    assert(e.errno !== undefined && e.errno > 0);
    assertStrictEquals(openFds(), before, "the module file must be closed after a failed load");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const u = await assertRejects(() => unloadModule("spillway_no_such_module"), KernelModuleError);
  assertMatch(u.message, /^unloading spillway_no_such_module: .*\((ENOENT|ENOSYS|EPERM): /);
  if (!moduleHere) { // never unload a module someone uses
    const err: string[] = [];
    assertStrictEquals(await kmodCommand("unload", { printError: (l) => err.push(l) }), 1);
    assertMatch(err[0], /^spillway kmod unload: unloading spillway: /);
  }
});

test("kmod pool: open failures are clear and leak no fd", async () => {
  const before = openFds();
  if (!moduleHere) {
    const e = await assertRejects(() => Pool.open(), KernelModuleError);
    assertStringIncludes(e.message, NOT_LOADED_MESSAGE);
    assertStrictEquals(e.errno, 2);
  }
  // a device that is not ours: the VERSION ioctl fails with ENOTTY and the fd is closed again
  const e = await assertRejects(() => Pool.open("/dev/null"), KernelModuleError);
  assertStringIncludes(e.message, "/dev/null: VERSION: not a spillway device");
  assertStringIncludes(e.message, "ENOTTY");
  assertStrictEquals(openFds(), before);
});

test("kmod pool: allocation sizes are checked before the ioctl", () => {
  checkAllocSize(2 * 1024 * 1024);
  checkAllocSize(64 * 2 ** 30);
  for (const bad of [0, -2097152, 1, 3 * 1024 * 1024, 2097152.5, 2 ** 41]) {
    const e = assertThrows(() => checkAllocSize(bad), KernelModuleError, "multiple of 2097152");
    assertStrictEquals(e.errno, 22);
  }
  assertStrictEquals(alignToChunk(1), 2097152);
  assertStrictEquals(alignToChunk(2097152), 2097152);
  assertStrictEquals(alignToChunk(2097153), 4194304);
});

test("kmod pool: mapFd gives a live shared view of an fd", async () => {
  const c = await libc();
  const dir = tmp();
  try {
    const file = join(dir, "buf");
    writeFileSync(file, new Uint8Array(8192));
    const fd = c.open(file, O.RDWR | O.CLOEXEC);
    assert(fd >= 0);
    const m = mapFd(c, fd, 8192);
    m.view.set([1, 2, 3], 4096);
    m.view[8191] = 0xee;
    m.unmap();
    m.unmap();
    c.close(fd);
    const back = readFileSync(file);
    assertEquals(Array.from(back.subarray(4096, 4099)), [1, 2, 3]);
    assertStrictEquals(back[8191], 0xee);
    const ro = openSync(file, "r");
    try {
      const e = assertThrows(() => mapFd(c, ro, 8192), KernelModuleError, "not open for writing");
      assertStrictEquals(e.errno, 13);
    } finally {
      closeSync(ro);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
