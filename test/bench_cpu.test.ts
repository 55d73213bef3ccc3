// The harness's CPU-only mode end to end: a tiny synthetic model timed by node-llama-cpp's CPU
// build under three configurations, checked against the first, written as results.json,
// results.md, chart.svg and chart.png. The harness is a Node program (it runs under the carried
// node on the GPU machine), so every runtime's test starts it with node.
import { test } from "node:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertGreater, assertMatch } from "./_assert.ts";
import type { RunResults } from "../bench/harness/results.ts";

test("CPU mode writes valid results, table and chart", () => {
  const out = mkdtempSync(join(tmpdir(), "bench-cpu-test-"));
  try {
    const r = spawnSync("node", ["--import", "tsx", "bench/harness/main.ts", "cpu", "--out", out, "--prompt", "32", "--gen", "4", "--reps", "1"], {
      encoding: "utf8",
      timeout: 55_000,
    });
    assertEquals(r.status, 0, `harness cpu failed: ${r.stderr}\n${r.stdout}`);
    const res = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as RunResults;
    assertEquals(res.version, 1);
    assertEquals(res.kind, "cpu");
    assertGreater(res.machine.cpuCores, 0);
    assertEquals(res.results.map((x) => x.id), ["reference", "small-batch", "no-mmap"]);
    for (const x of res.results) {
      assertEquals(x.status, "ok");
      assertGreater(x.prefill!.tps, 0);
      assertGreater(x.decode!.tps, 0);
      assertEquals(x.decode!.tokens, 4);
    }
    assertEquals(res.results[0].check.pass, null);
    // Same CPU kernels: identical greedy tokens.
    assert(res.results.slice(1).every((x) => x.check.pass === true), JSON.stringify(res.results.map((x) => x.check)));
    const md = readFileSync(join(out, "results.md"), "utf8");
    assertMatch(md, /\| method \| free VRAM \| prefill t\/s \| decode t\/s \|/);
    for (const x of res.results) assert(md.includes(`| ${x.label} |`));
    const svg = readFileSync(join(out, "chart.svg"), "utf8");
    assertEquals(svg.match(/<rect x=/g)?.length, 6);
    const png = readFileSync(join(out, "chart.png"));
    assertEquals([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assertGreater(png.readUInt32BE(16), 100); // IHDR width
    assert(!existsSync(join(out, "results.json.tmp")));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
