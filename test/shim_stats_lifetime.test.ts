// Issue 18 item 10: stats records of processes that end without the shim's destructor (SIGKILL,
// _exit, exec into another program) are removed by whoever lists them (`spillway top`, the engine);
// a forked child writes a record only once it uses CUDA; names carry pid, start time and pid
// namespace, so equal pids of two namespaces sharing the directory do not collide.
import { test } from "node:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { listRecordFiles, listShimStats, parseRecordName, pruneShimStats, readShimStats, statsUserDir } from "../shim/stats.ts";
import { snapshot } from "../engine/monitor.ts";
import { assert, assertEquals } from "./_assert.ts";
import { MiB, ofOp, runProg } from "./shim_helpers.ts";
import { type LiveProg, startProg } from "./shim_spawn.ts";

const base = { FAKECUDA_VRAM: "256M", SPILLWAY_VRAM_BUDGET: "100M", SPILLWAY_MIN_SPILL: "1M", SPILLWAY_HOST_LIMIT: "1G" };

async function withDir(fn: (dir: string, track: (p: LiveProg) => LiveProg) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "spillway-stats-"));
  const progs: LiveProg[] = [];
  try {
    await fn(dir, (p) => (progs.push(p), p));
  } finally {
    for (const p of progs) p.child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

const files = (dir: string): string[] => (existsSync(statsUserDir(dir)) ? readdirSync(statsUserDir(dir)) : []);

test("issue 18 item 10: the record is named by pid, start time and pid namespace", async () => {
  await withDir(async (dir, track) => {
    const p = track(await startProg(["init", "a:drv:10M", "pause"], { ...base, SPILLWAY_STATS_DIR: dir }));
    await p.paused(1);
    const [name] = files(dir);
    const parsed = parseRecordName(name ?? "");
    assert(parsed, `record name ${name}`);
    const stat = readFileSync(`/proc/${p.pid}/stat`, "latin1");
    const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    assertEquals(parsed, { pid: p.pid, startTicks: BigInt(start!), pidNamespace: BigInt(statSync("/proc/self/ns/pid", { bigint: true }).ino) });
    p.resume();
    assertEquals(await p.exited, 0);
    assertEquals(files(dir), [], "removed at a normal exit");
  });
});

test("issue 18 item 10: records of SIGKILLed and _exit()ed processes are removed when listed", async () => {
  await withDir(async (dir, track) => {
    const env = { ...base, SPILLWAY_STATS_DIR: dir };
    const p = track(await startProg(["init", "a:drv:10M", "pause"], env));
    await p.paused(1);
    assertEquals(listShimStats(dir).map((s) => s.pid), [p.pid]);
    // process.kill, not child.kill: Deno's closes the child's stdin first, and the program then ends normally.
    process.kill(p.pid, "SIGKILL");
    await p.exited;
    const r = await runProg(["init", "a:drv:10M", "exit"], { env });
    assertEquals(r.status, 0);
    assertEquals(files(dir).length, 2, "both left their record behind");
    assertEquals(snapshot({ statsDir: dir, kmodPaths: { sysfsDir: join(dir, "no-kmod"), devicePath: join(dir, "no-dev"), paramsDir: join(dir, "no-params") } }).processes, [], "top lists neither");
    assertEquals(files(dir), [], "and removed both");
  });
});

test("issue 18 item 10: after exec the old program's record goes; a new one of the same process replaces it", async () => {
  await withDir(async (dir, track) => {
    const env = { ...base, SPILLWAY_STATS_DIR: dir };
    // exec into a program that does not use CUDA: the process lives on, the record is stale.
    const p = track(await startProg(["init", "a:drv:10M", "exec", "pause"], env));
    await p.paused(1);
    assertEquals(files(dir).length, 1);
    assertEquals(readShimStats(p.pid, dir), null, "the pid runs, but no longer the program that wrote the record");
    assertEquals(pruneShimStats(dir).length, 1);
    assertEquals(files(dir), []);
    p.resume();
    assertEquals(await p.exited, 0);
    // exec into a program that uses CUDA again: same pid and start time, so the same name.
    const q = track(await startProg(["init", "a:drv:10M", "exec", "init", "a:drv:20M", "pause"], env));
    await q.paused(1);
    assertEquals(files(dir).length, 1);
    const s = readShimStats(q.pid, dir);
    assertEquals([s?.allocs, s?.tiers[0]?.bytes], [1n, BigInt(20 * MiB)], "the new program's record");
    q.resume();
    assertEquals(await q.exited, 0);
    assertEquals(files(dir), []);
  });
});

test("issue 18 item 10: a forked child writes no record until it uses CUDA, then its own, removed at its exit", async () => {
  await withDir(async (dir) => {
    const env = { ...base, SPILLWAY_STATS_DIR: dir };
    const r = await runProg(["init", "a:drv:10M", "fork", "forka"], { env });
    assertEquals(r.status, 0, r.stderr);
    assertEquals(ofOp(r, "fork")[0], { op: "fork", childFileDuring: false, childFileAfter: false, parentFile: true });
    assertEquals(ofOp(r, "forka")[0], { op: "forka", childFileDuring: true, childFileAfter: false, parentFile: true });
    assertEquals(files(dir), []);
  });
});

test("issue 18 item 10: equal pids in two pid namespaces sharing the directory get two records", async (t) => {
  const probe = spawnSync("unshare", ["-Urpf", "--mount-proc", "true"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) {
    t.skip(`unshare -Urpf is not available here: ${probe.error?.message ?? probe.stderr.trim()}`);
    return;
  }
  await withDir(async (dir, track) => {
    const env = { ...base, SPILLWAY_STATS_DIR: dir };
    const wrap = ["unshare", "-Urpf", "--mount-proc"];
    const a = track(await startProg(["init", "a:drv:10M", "pause"], env, wrap));
    const b = track(await startProg(["init", "a:drv:30M", "pause"], env, wrap));
    await a.paused(1);
    await b.paused(1);
    assertEquals([a.lines[2]!.pid, b.lines[2]!.pid], [1, 1], "both are pid 1 of their namespace");
    // In the user namespace the program is uid 0: its directory is spillway-0.
    const udir = join(dir, "spillway-0");
    const names = readdirSync(udir).map((n) => parseRecordName(n)!);
    assertEquals(names.length, 2);
    assertEquals(names.map((n) => n.pid), [1, 1]);
    assert(names[0]!.pidNamespace !== names[1]!.pidNamespace);
    if (process.geteuid?.() === 0) {
      // Root lists every user's directory; these are of other namespaces: kept, shown as such.
      const recs = listRecordFiles(dir).filter((r) => r.path.startsWith(udir));
      assertEquals(recs.map((r) => r.state), ["unknown", "unknown"]);
      const vram = listShimStats(dir).map((s) => Number(s.tiers[0]!.bytes)).sort((x, y) => x - y);
      assertEquals(vram, [10 * MiB, 30 * MiB]);
    }
    a.resume();
    b.resume();
    assertEquals([await a.exited, await b.exited], [0, 0]);
    assertEquals(readdirSync(udir), []);
  });
});
