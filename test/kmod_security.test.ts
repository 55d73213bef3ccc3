// Issue 18, kernel-module client side: `spillway kmod status` escapes control characters of
// pool_info (other processes' command names), `spillway kmod load` as root refuses a module file
// another user could have written, and the qemu test bed fails (not skips) without bun.
import { test } from "node:test";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { KernelModuleError } from "../core/errors.ts";
import { kmodCommand } from "../commands/kmod.ts";
// a namespace import, so that each test fails on its own against a loader that lacks a function
import * as loader from "../kmod/loader.ts";
import { assert, assertEquals, assertMatch, assertRejects, assertStrictEquals, assertThrows } from "./_assert.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const isRoot = process.geteuid?.() === 0;
/** This process's descriptors open on `path` (a count of all fds flaked: the runtime opens its own meanwhile). */
const fdsOn = (path: string): string[] =>
  readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false; // closed while listing
    }
  });

test("kmod_status_escapes_control_chars: pool_info's command names cannot drive the terminal", () => {
  const dir = mkdtempSync(join(tmpdir(), "spw-kmod-sec-"));
  try {
    const sysfs = join(dir, "class");
    mkdirSync(sysfs);
    for (const [k, v] of Object.entries({ pool_limit_bytes: "8589934592\n", pool_used_bytes: "0\n", buffers: "1\n", pressure: "none\n" })) {
      writeFileSync(join(sysfs, k), v);
    }
    // what an older module printed raw: a clear-screen sequence, a bell, an 8-bit CSI
    writeFileSync(join(sysfs, "pool_info"), "buffers 1\nbuffer id=1 tgid=42 comm=\x1b[2J\x07x\x9b31m locked_pages=0\n");
    const text = loader.formatStatus(loader.moduleStatus({ sysfsDir: sysfs, paramsDir: join(dir, "none"), devicePath: join(dir, "none") }));
    assert(!/[\x00-\x09\x0b-\x1f\x7f-\x9f]/.test(text), `control characters reach the terminal: ${JSON.stringify(text)}`);
    assertMatch(text, /comm=\\x1b\[2J\\x07x\\x9b31m locked_pages=0/);
    assertEquals(loader.escapeControl?.("tab\there\nnew line"), "tab\\x09here\nnew line");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("kmod_status_pool_info_unreadable_is_said", () => {
  const dir = mkdtempSync(join(tmpdir(), "spw-kmod-sec-"));
  try {
    writeFileSync(join(dir, "pool_used_bytes"), "0\n");
    const text = loader.formatStatus(loader.moduleStatus({ sysfsDir: dir, paramsDir: join(dir, "none"), devicePath: join(dir, "none") }));
    assertMatch(text, /pool_info: not readable by this user \(mode 0440: root and the device's group\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("kmod_load_refuses_module_not_owned_by_root: as root, another user's .ko is not loaded", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spw-kmod-sec-"));
  try {
    const ko = join(dir, "spillway.ko");
    writeFileSync(ko, "not an ELF module");
    if (isRoot) chownSync(ko, 65534, 65534);
    // the check itself, as root would run it (works for any caller: the file is not root's)
    if (isRoot) {
      const e = await assertRejects(() => loader.loadModule(ko, "group=1"), KernelModuleError);
      assertMatch(e.message, new RegExp(`module file ${ko} is owned by uid 65534, not root: refusing to load code another user can change`));
      assertEquals(fdsOn(ko), [], "the module file must be closed after a refused load");
      // `spillway kmod load` without --ko: the cached build under --build-dir is checked the same way
      mkdirSync(join(dir, "src"));
      const cached = join(dir, "src", "spillway.ko");
      writeFileSync(cached, "not an ELF module");
      chownSync(cached, 65534, 65534);
      const err: string[] = [];
      assertStrictEquals(await kmodCommand("load", { buildDir: dir, print: () => {}, printError: (l) => err.push(l) }), 1);
      assertMatch(err[0], /^spillway kmod load: module file .*\/src\/spillway\.ko is owned by uid 65534, not root/);
      // root's file, but writable by others
      chownSync(ko, 0, 0);
      chmodSync(ko, 0o666);
      const w = await assertRejects(() => loader.loadModule(ko), KernelModuleError);
      assertMatch(w.message, /is writable by its group \(mode 0666\): refusing to load/);
      chmodSync(ko, 0o602);
      const o = await assertRejects(() => loader.loadModule(ko), KernelModuleError);
      assertMatch(o.message, /is writable by others \(mode 0602\)/);
    } else {
      // not root: the kernel refuses any load; the check is still exercised as root would run it
      const { openSync, closeSync } = await import("node:fs");
      const n = openSync(ko, "r");
      try {
        assertThrows(() => loader.checkModuleFileOwner(ko, n, 0), KernelModuleError, "not root: refusing to load code another user can change");
      } finally {
        closeSync(n);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("kmod_testbed_missing_bun_fails: the qemu test bed fails instead of skipping the TypeScript client", () => {
  const r = spawnSync("bash", [join(root, "kmod/testbed/run.sh")], {
    encoding: "utf8",
    env: { ...process.env, SPILLWAY_TESTBED_BUN: "/nonexistent/bun" },
    timeout: 60_000,
  });
  assertStrictEquals(r.status, 1, `run.sh exited ${r.status}: ${r.stdout}${r.stderr}`);
  assertMatch(r.stdout, /^FAIL: kmod-testbed \(ts-client-e2e: no bun at \/nonexistent\/bun/m);
});
