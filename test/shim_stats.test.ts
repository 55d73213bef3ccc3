// The per-process stats record: read live from another process through shim/stats.ts, removed at
// exit, none for a forked child that does not use CUDA; and the control API through the FFI core.
import { test } from "node:test";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { openShimControl } from "../shim/control.ts";
import { decodeShimStats, listShimStats, readShimStats, readShimStatsFile, STATS_SIZE, statsUserDir } from "../shim/stats.ts";
import { SpillwayError } from "../core/errors.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { fakeCudaDir, MiB, ofOp, runProg, testShim } from "./shim_helpers.ts";

const base = { FAKECUDA_VRAM: "256M", SPILLWAY_VRAM_BUDGET: "100M", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" };

test("shim stats: another process reads the live record; it is gone after exit", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-stats-"));
  try {
    const child = spawn(join(fakeCudaDir(), "shimprog13"), ["init", "a:drv:40M", "a:drv:100M", "s", "pause", "f:drv:1"], {
      env: { PATH: process.env.PATH ?? "", LD_LIBRARY_PATH: fakeCudaDir(), LD_PRELOAD: await testShim(), SPILLWAY_STATS_DIR: dir, ...base },
      stdio: ["pipe", "pipe", "inherit"],
    });
    const lines: Record<string, any>[] = [];
    let buf = "";
    const paused = new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          lines.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
          if (lines.at(-1)!.op === "pause") resolve();
        }
      });
      child.on("exit", () => reject(new Error(`shimprog exited before pausing: ${JSON.stringify(lines)}`)));
    });
    await paused;
    const pid = child.pid!;
    const s = readShimStats(pid, dir);
    assert(s !== null, "the record exists while the process runs");
    const printed = lines.find((l) => l.op === "s")!.shim;
    assertEquals(s.pid, pid);
    assertEquals(s.version, 1);
    assertEquals(s.backingName, "auto");
    assertEquals(s.reportModeName, "vram+host");
    assertEquals([s.vramBudget, s.reserve, s.minSpill, s.hostLimit], [100n * 1048576n, 1n << 30n, 1048576n, 1n << 30n]);
    assertEquals(s.tiers.map((t) => Number(t.bytes)), printed.tiers.map((t: { bytes: number }) => t.bytes));
    assertEquals(Number(s.tiers[0].bytes), 100 * MiB);
    assertEquals(Number(s.tiers[1].bytes), 40 * MiB);
    assertEquals([s.allocs, s.spills, s.splits, s.largestAlloc], [2n, 1n, 1n, 100n * 1048576n]);
    assert(s.updateNs >= s.startNs && s.startNs > 0n);
    assertEquals(listShimStats(dir).map((x) => x.pid), [pid]);
    const exited = new Promise((r) => child.on("exit", r));
    child.stdin.end("\n");
    assertEquals(await exited, 0);
    assertEquals(readShimStats(pid, dir), null, "removed at exit");
    assertEquals(listShimStats(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("shim stats: a forked child that never uses CUDA writes no record; the parent's stays", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-stats-"));
  try {
    const r = await runProg(["init", "a:drv:10M", "fork"], { env: { ...base, SPILLWAY_STATS_DIR: dir } });
    assertEquals(ofOp(r, "fork")[0], { op: "fork", childFileDuring: false, childFileAfter: false, parentFile: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("shim stats: a file that is not a spillway record is refused with the file named, and skipped when listing", () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-stats-"));
  try {
    const udir = statsUserDir(dir);
    mkdirSync(udir, { mode: 0o700 });
    const bogus = join(udir, "4242-1-1");
    writeFileSync(bogus, new Uint8Array(STATS_SIZE));
    assertThrows(() => readShimStatsFile(bogus), SpillwayError, "4242-1-1: not a spillway stats record");
    assertEquals(listShimStats(dir), []);
    const wrongVersion = new Uint8Array(STATS_SIZE);
    const v = new DataView(wrongVersion.buffer);
    v.setBigUint64(0, 0x5457534c4c495053n, true);
    v.setUint32(8, 99, true);
    assertThrows(() => decodeShimStats(wrongVersion, "x"), SpillwayError, "stats layout version 99");
    assertThrows(() => decodeShimStats(new Uint8Array(3), "y"), SpillwayError, "too short");
    assertEquals(readShimStats(999999999, dir), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("shim control API through the FFI core: version, stats, budget", async () => {
  const shim = await openShimControl(await testShim());
  try {
    assertEquals(shim.version(), { major: 0, minor: 1, patch: 0 });
    const s = shim.stats();
    assertEquals(s.pid, process.pid);
    assertEquals(Number(s.allocs), 0);
    shim.setBudget(123n << 20n);
    assertEquals(shim.stats().vramBudget, 123n << 20n);
    assertThrows(() => shim.setBudget(1n, 99), RangeError, "out of range");
    assertThrows(() => shim.setBudget(-1n), RangeError, "negative");
    assertEquals(readShimStats(process.pid), null, "no record file for a process that never used CUDA");
  } finally {
    shim.close();
  }
});

test("shim control API: spillway_shim_set_budget steers later allocations of a running program", async () => {
  const r = await runProg(["init", "a:drv:60M", "budget:-1:20M", "a:drv:60M", "s"], { env: base });
  assertEquals(ofOp(r, "budget")[0].r, 0);
  const [s] = ofOp(r, "s");
  assertEquals(s.shim.budget, 20 * MiB);
  assertEquals([s.fake.vramUsed, s.fake.hostVmm], [60 * MiB, 60 * MiB], "the second allocation found no budget left");
});
