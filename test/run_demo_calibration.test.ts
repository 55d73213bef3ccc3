// `spillway run recipes/demo.json5` (issue 14 item 3) prints the predicted and the measured speed
// and records the measurement in the cache's calibration.json (private file, keyed by machine,
// runtime and threads); the next plan on this machine says it is calibrated and predicts with it.
import { test } from "node:test";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { ROOT } from "./_native.ts";
import { runCli } from "./_spillway_cli.ts";

test("demo: predicted vs measured printed, calibration recorded, the next plan uses it (CLI)", () => {
  const cache = mkdtempSync(join(tmpdir(), "spillway-cache-"));
  try {
    const env = { SPILLWAY_CACHE: cache };
    const demo = join(ROOT, "recipes", "demo.json5");
    const first = runCli(["run", demo], { env, timeoutMs: 300_000 });
    assertEquals(first.status, 0, first.stderr);
    const pred = /^predicted prefill ([\d.]+) t\/s, decode ([\d.]+) t\/s/m.exec(first.stdout);
    assert(pred, first.stdout);
    const check = /^check {5}decode predicted (\d+(?:\.\d)?) t\/s, measured ([\d.]+) t\/s \([+-]?\d+%\); prefill predicted (\d+(?:\.\d)?) t\/s, measured ([\d.]+) t\/s \([+-]?\d+%\)$/m.exec(first.stdout);
    assert(check, first.stdout);
    assertEquals(Math.round(Number(check[1])), Math.round(Number(pred[2])), "the check compares with the plan's own prediction");
    assertMatch(first.stdout, /^calibrated fixed costs for node-llama-cpp with 1 thread on this machine: decode x[\d.]+, prefill x[\d.]+ \(median of 1 run; .*calibration\.json\); later plans use them$/m);
    const file = join(cache, "calibration.json");
    assertEquals((statSync(file).mode & 0o777).toString(8), "600");
    const cal = JSON.parse(readFileSync(file, "utf8"));
    const [key, records] = Object.entries(cal.entries)[0] as [string, { measured: { decodeTps: number } }[]];
    assertMatch(key, / \| cpu \| node-llama-cpp \| 1 threads$/);
    assertEquals(records.length, 1);
    assertEquals(Math.round(records[0]!.measured.decodeTps), Math.round(Number(check[2])));
    // The next plan on this machine is made with the recorded fixed costs and says so.
    const plan = runCli(["plan", demo, "--json"], { env });
    assertEquals(plan.status, 0, plan.stderr);
    const p = JSON.parse(plan.stdout) as { notes: string[] };
    assert(p.notes.some((n) => /fixed costs calibrated from 1 measured node-llama-cpp run on this machine/.test(n)), p.notes.join("\n"));
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});
