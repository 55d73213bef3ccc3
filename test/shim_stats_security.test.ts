// Issue 18 item 6: the shim's stats record on a shared machine. It lives in the user's own 0700
// directory (lstat-checked: no link, owner, mode), is created O_EXCL|O_NOFOLLOW with mode 0600, and
// the shim never reads it back: what another process writes into it changes nothing.
import { test } from "node:test";
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { listRecordFiles, listShimStats, STATS_LAYOUT, statsUserDir } from "../shim/stats.ts";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { MiB, ofOp, runProg } from "./shim_helpers.ts";
import { type LiveProg, startProg } from "./shim_spawn.ts";

const base = { FAKECUDA_VRAM: "256M", SPILLWAY_VRAM_BUDGET: "100M", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" };
const euid = process.geteuid!();
const running: LiveProg[] = [];
async function start(...a: Parameters<typeof startProg>) {
  const p = await startProg(...a);
  running.push(p);
  return p;
}
function cleanup(dir: string): void {
  for (const p of running.splice(0)) p.child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}

test("issue 18 item 6: the record is 0600 in a 0700 directory of the user's own", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-stats-"));
  try {
    const p = await start(["init", "a:drv:10M", "pause"], { ...base, SPILLWAY_STATS_DIR: dir });
    await p.paused(1);
    const udir = statsUserDir(dir);
    assertEquals(udir, join(dir, `spillway-${euid}`));
    const d = lstatSync(udir);
    assert(d.isDirectory() && !d.isSymbolicLink());
    assertEquals([d.mode & 0o777, d.uid], [0o700, euid]);
    const files = readdirSync(udir);
    assertEquals(files.length, 1, files.join(","));
    const f = lstatSync(join(udir, files[0]!));
    assert(f.isFile());
    assertEquals([f.mode & 0o777, f.uid], [0o600, euid]);
    assertEquals(readdirSync(dir), [`spillway-${euid}`], "nothing else is written in the shared directory");
    p.resume();
    assertEquals(await p.exited, 0);
  } finally {
    cleanup(dir);
  }
});

test("issue 18 item 6: a planted link or someone else's directory is not followed, nothing is overwritten, the program runs on", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-stats-"));
  try {
    // The program pauses before CUDA is used: the "attacker" knows its pid and plants links first.
    const p = await start(["pause", "init", "a:drv:10M", "s", "pause"], { ...base, SPILLWAY_STATS_DIR: dir });
    await p.paused(1);
    const victim = join(dir, "victim");
    writeFileSync(victim, "precious\n");
    const elsewhere = join(dir, "elsewhere");
    mkdirSync(elsewhere, { mode: 0o777 });
    symlinkSync(victim, join(dir, `spillway.${p.pid}`)); // where the shim wrote before
    symlinkSync(elsewhere, statsUserDir(dir)); // where it writes now
    p.resume();
    await p.paused(2);
    assertEquals(readFileSync(victim, "utf8"), "precious\n", "the victim file is untouched");
    assertEquals(readdirSync(elsewhere), [], "nothing written through the link");
    const [s] = p.lines.filter((l) => l.op === "s");
    assertEquals([s!.shim.allocs, s!.shim.tiers[0].bytes], [1, 10 * MiB], "stats stay in-process");
    assertEquals(listShimStats(dir), [], "top does not read through the link either");
    p.resume();
    assertEquals(await p.exited, 0);
    assertStringIncludes(p.stderr(), "not a private directory");
    assertStringIncludes(p.stderr(), "a symbolic link");
  } finally {
    cleanup(dir);
  }
});

test("issue 18 item 6: a directory with group/other access, or (as root) owned by another user, is refused", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-stats-"));
  try {
    const udir = statsUserDir(dir);
    mkdirSync(udir);
    // mkdir's mode is cut by the umask: set it explicitly.
    chmodSync(udir, 0o777);
    let r = await runProg(["init", "a:drv:10M", "s"], { env: { ...base, SPILLWAY_STATS_DIR: dir } });
    assertEquals(r.status, 0, r.stderr);
    assertStringIncludes(r.stderr, "mode 777");
    assertEquals(readdirSync(udir), []);
    if (euid === 0) {
      chmodSync(udir, 0o700);
      chownSync(udir, 65534, 65534);
      r = await runProg(["init", "a:drv:10M", "s"], { env: { ...base, SPILLWAY_STATS_DIR: dir } });
      assertStringIncludes(r.stderr, "owner 65534");
      assertEquals(readdirSync(udir), []);
      assertEquals(ofOp(r, "s")[0]!.shim.allocs, 1);
    }
  } finally {
    cleanup(dir);
  }
});

test("issue 18 item 6: values written into the record change nothing the shim does (rules count allocations in process memory)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-stats-"));
  try {
    // The rule puts the second allocation (index 1) in host memory.
    const env = { ...base, SPILLWAY_STATS_DIR: dir, SPILLWAY_PLACEMENT_RULES: "index=1 host" };
    const p = await start(["init", "a:drv:2M", "pause", "a:drv:2M", "a:drv:2M", "s", "pause"], env);
    await p.paused(1);
    const [rec] = listRecordFiles(dir);
    assert(rec, "the record exists");
    const bytes = readFileSync(rec.path);
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    v.setBigUint64(STATS_LAYOUT.allocs, 1000n, true); // another process's idea of the allocation count
    v.setBigUint64(STATS_LAYOUT.tiers, 1n << 40n, true); // and of the VRAM in use
    writeFileSync(rec.path, bytes);
    p.resume();
    await p.paused(2);
    const [s] = p.lines.filter((l) => l.op === "s");
    assertEquals(s!.shim.allocs, 3);
    assertEquals([s!.shim.spills, s!.fake.hostVmm, s!.fake.vramUsed], [1, 2 * MiB, 4 * MiB], "index 1 went to host, by the true count");
    assertEquals(s!.shim.tiers[0].bytes, 4 * MiB);
    const [live] = listShimStats(dir);
    assertEquals([live!.allocs, live!.tiers[0]!.bytes], [3n, BigInt(4 * MiB)], "the record was rewritten from process memory");
    assertEquals(statSync(rec.path).size, 296);
    p.resume();
    assertEquals(await p.exited, 0);
  } finally {
    cleanup(dir);
  }
});

test("issue 18 item 6: readers follow no link and open no FIFO under a record's name", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-stats-"));
  try {
    const p = await start(["init", "a:drv:10M", "pause"], { ...base, SPILLWAY_STATS_DIR: dir });
    await p.paused(1);
    const [rec] = listRecordFiles(dir);
    assert(rec, "the record exists");
    // Names a reader would take for records of another pid namespace (kept, and read).
    const udir = statsUserDir(dir);
    symlinkSync(rec.path, join(udir, `${rec.pid}-${rec.startTicks}-${rec.pidNamespace + 1n}`));
    spawnSync("mkfifo", [join(udir, `${rec.pid}-${rec.startTicks}-${rec.pidNamespace + 2n}`)]);
    assertEquals(listShimStats(dir).map((s) => s.pid), [p.pid], "the process once, from its own file");
    assertEquals(listRecordFiles(dir).map((r) => r.path), [rec.path]);
    p.resume();
    assertEquals(await p.exited, 0);
  } finally {
    cleanup(dir);
  }
});
