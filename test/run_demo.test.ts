// The main job end to end on the CPU: `spillway run recipes/demo.json5` synthesizes the tiny model
// on first use, plans it, runs it in process through node-llama-cpp's CPU build and reports prompt
// and generation speed. Runs in the test's own runtime (node-llama-cpp loads under Node, Bun and Deno).
import { test } from "node:test";
import { join } from "node:path";
import { assert, assertEquals, assertGreater, assertMatch } from "./_assert.ts";
import { ROOT } from "./_native.ts";
import { formatCommand, runCommand, type RunReport } from "../commands/run.ts";

test("spillway run recipes/demo.json5: plans, runs node-llama-cpp in process, reports t/s", async () => {
  let text = "";
  const code = await runCommand(join(ROOT, "recipes", "demo.json5"), [], { json: true, out: (s) => (text += s), err: () => {} });
  assertEquals(code, 0);
  const report = JSON.parse(text) as RunReport;
  assert(report.plan, "the report has the plan");
  assertEquals(report.plan.runtime, "node-llama-cpp");
  assertEquals(report.plan.settings.gpuLayers, 0, "no GPU here: everything on the CPU");
  assert(report.launch.inProcess);
  const r = report.result!;
  assertEquals(r.backend, "cpu");
  assertEquals(r.promptTokens, report.plan.workload.promptTokens, "the short prompt is repeated to the workload's length");
  assertEquals(r.genTokens, report.plan.workload.generatedTokens);
  assertGreater(r.promptTps, 0);
  assertGreater(r.genTps, 0);
  assertEquals(report.exitStatus, 0);
});

test("spillway run --dry-run prints the plan and the exact command, launches nothing", async () => {
  let text = "";
  const code = await runCommand(null, ["sh", "-c", "echo it ran; exit 9"], { dryRun: true, out: (s) => (text += s), err: () => {} });
  assertEquals(code, 0);
  assertMatch(text, /^command {3}sh -c 'echo it ran; exit 9'$/m);
  assert(!text.includes("it ran\n"), "nothing launched");
  assertEquals(formatCommand({ argv: ["llama-server", "-m", "a b.gguf"], env: { LD_PRELOAD: "/x/lib.so" } }), "env LD_PRELOAD=/x/lib.so llama-server -m 'a b.gguf'");
});
