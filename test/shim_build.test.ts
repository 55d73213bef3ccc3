// shim/build.ts: building with gcc into the content-hash cache, locating, the environment for a
// program; shim/placement.ts: the placement map text.
import { test } from "node:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildShim, locateShim, SHIM_LIBRARY_NAME, shimContentHash, shimEnv, shimLibraryPath } from "../shim/build.ts";
import { formatPlacementMap } from "../shim/placement.ts";
import { LaunchError } from "../core/errors.ts";
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./_assert.ts";
import { testShim } from "./shim_helpers.ts";

test("shim build: locateShim builds once per source content and then reuses the library", async () => {
  const path = await testShim();
  assert(path.endsWith(join(`shim-${shimContentHash()}`, SHIM_LIBRARY_NAME)), path);
  const before = statSync(path).mtimeMs;
  assertEquals(await testShim(), path);
  assertEquals(statSync(path).mtimeMs, before, "not rebuilt");
});

test("shim build: SPILLWAY_SHIM names a prebuilt library; a missing one is a clear error", async () => {
  const saved = process.env.SPILLWAY_SHIM;
  try {
    process.env.SPILLWAY_SHIM = await testShim();
    assertEquals(await locateShim(), process.env.SPILLWAY_SHIM);
    process.env.SPILLWAY_SHIM = "/nonexistent/libspillway_shim.so";
    await assertRejects(() => locateShim(), LaunchError, "SPILLWAY_SHIM=/nonexistent/libspillway_shim.so: no such file");
  } finally {
    if (saved === undefined) delete process.env.SPILLWAY_SHIM;
    else process.env.SPILLWAY_SHIM = saved;
  }
});

test("shim build: a missing compiler is reported with what to do, and nothing is left behind", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-build-"));
  try {
    const out = join(dir, "x", SHIM_LIBRARY_NAME);
    await assertRejects(() => buildShim(out, "/nonexistent/gcc"), LaunchError, "install gcc or set SPILLWAY_SHIM");
    assertThrows(() => statSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("shim env: settings become LD_PRELOAD and SPILLWAY_* variables (docs/contracts.md)", () => {
  const env = shimEnv(
    { vramBudgetBytes: 12 * 2 ** 30, reserveBytes: 2 ** 30, minSpillBytes: 32 * 2 ** 20, hostLimitBytes: 64 * 2 ** 30, backing: "vmm", report: "vram+host", placementMapFile: "/tmp/map", log: "debug" },
    "/lib/libspillway_shim.so",
    { LD_PRELOAD: "/other.so" },
  );
  assertEquals(env, {
    LD_PRELOAD: "/lib/libspillway_shim.so:/other.so",
    SPILLWAY_VRAM_BUDGET: String(12 * 2 ** 30),
    SPILLWAY_RESERVE: String(2 ** 30),
    SPILLWAY_MIN_SPILL: String(32 * 2 ** 20),
    SPILLWAY_HOST_LIMIT: String(64 * 2 ** 30),
    SPILLWAY_BACKING: "vmm",
    SPILLWAY_REPORT: "vram+host",
    SPILLWAY_PLACEMENT: "/tmp/map",
    SPILLWAY_LOG: "debug",
  });
  const minimal = shimEnv({ reserveBytes: 0, minSpillBytes: 0, backing: "auto", report: 40 * 2 ** 30 }, "/s.so");
  assertEquals(minimal, { LD_PRELOAD: "/s.so", SPILLWAY_RESERVE: "0", SPILLWAY_MIN_SPILL: "0", SPILLWAY_BACKING: "auto", SPILLWAY_REPORT: String(40 * 2 ** 30) });
  assertThrows(() => shimEnv({ reserveBytes: -1, minSpillBytes: 0, backing: "auto", report: "vram" }, "/s.so"), RangeError, "reserveBytes");
  assertMatch(shimLibraryPath("/cache"), /^\/cache\/shim-[0-9a-f]{16}\/libspillway_shim\.so$/);
});

test("shim placement map: rules as text the shim parses", () => {
  const text = formatPlacementMap([
    { index: 0, action: { head: 10 * 2 ** 30 }, comment: "weights" },
    { min: 1 << 20, max: 2 << 20, action: "host" },
    { action: "vram" },
  ]);
  assertEquals(text.split("\n").slice(1), ["index=0 head=10737418240  # weights", "min=1048576 max=2097152 host", "* vram", ""]);
  assertThrows(() => formatPlacementMap([{ size: 1.5, action: "vram" }]), RangeError, "size");
});
