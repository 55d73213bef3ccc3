// Issue 14 item 10: recipes with a shebang line were not executable (mode 644) although the docs
// present them as scripts; a child killed after the grace period went without a word; `spillway
// run --dry-run` on a synthetic model not made yet did not say it would be synthesized.
// (`top` into a pipe: test/cli_npx_signals.test.ts and test/run_launch.test.ts.)
import { test } from "node:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { ROOT } from "./_native.ts";
import { launchSpec } from "../engine/launch/mod.ts";

const underNode = !process.versions.bun && !process.versions.deno;

test("every recipe with a shebang line is executable, in git and on disk", () => {
  const recipes = readdirSync(join(ROOT, "recipes")).filter((f) => readFileSync(join(ROOT, "recipes", f), "utf8").startsWith("#!"));
  assert(recipes.length >= 5, "the example recipes have shebang lines");
  const git = spawnSync("git", ["ls-files", "-s", "recipes"], { cwd: ROOT, encoding: "utf8" });
  const modes = new Map(git.status === 0 ? git.stdout.trim().split("\n").map((l) => [l.split("\t")[1]!, l.split(" ")[0]!]) : []);
  for (const f of recipes) {
    assert((statSync(join(ROOT, "recipes", f)).mode & 0o111) === 0o111, `recipes/${f} is executable on disk`);
    if (modes.size) assertEquals(modes.get(`recipes/${f}`), "100755", `recipes/${f} is executable in git`);
  }
});

test("a recipe runs as a script: ./recipes/demo.json5 --dry-run (its shebang: npx spillway run)", { skip: underNode ? false : "runs once, under node (npx)" }, () => {
  const r = spawnSync(join(ROOT, "recipes", "demo.json5"), ["--dry-run"], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
  assertEquals(r.status, 0, r.stderr);
  assertMatch(r.stdout, /^command +\(in process\) node-llama-cpp --model /m);
});

test("a child killed after the grace period is reported, not killed silently", async () => {
  const messages: string[] = [];
  const h = launchSpec(
    { argv: ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"], env: {} },
    { stdio: "pipe", forwardSignals: false, newProcessGroup: true, killGraceMs: 300, onForceKill: (m) => messages.push(m) },
  );
  await new Promise<void>((r) => h.stdout!.once("data", () => r()));
  assertEquals(await h.stop("SIGTERM"), 137);
  assertEquals(messages.length, 1);
  assertMatch(messages[0]!, new RegExp(`^spillway: sh \\(pid ${h.pid}\\) did not stop 0.3 s after SIGTERM; killed it \\(SIGKILL\\)$`));
});

test("spillway run --dry-run on a synthetic model not made yet says it will be synthesized, where and how big", { skip: underNode ? false : "runs once, under node (npx)" }, () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-dry-"));
  try {
    const recipe = join(dir, "r.json5");
    writeFileSync(recipe, `{ model: { id: "tiny-moe", quant: "q8_0", synth: true }, runtime: { name: "node-llama-cpp", prompt: "Hello" },
      context: 256, batch: 256, threads: 2, workload: { promptTokens: 16, generatedTokens: 8 } }`);
    const env = { ...process.env, SPILLWAY_CACHE: join(dir, "cache") };
    const model = join(dir, "cache", "models", "tiny-moe-q8_0.gguf");
    const r = spawnSync("npx", ["spillway", "run", recipe, "--dry-run"], { cwd: ROOT, encoding: "utf8", env, timeout: 120_000 });
    assertEquals(r.status, 0, r.stderr);
    assertMatch(r.stdout, new RegExp(`^model +not made yet: the run first synthesizes tiny-moe Q8_0 \\(random weights, about [\\d.]+ KiB\\) at ${model.replace(/[.]/g, "\\.")}$`, "m"));
    assert(!existsSync(model), "a dry run makes nothing");
    const j = spawnSync("npx", ["spillway", "run", recipe, "--dry-run", "--json"], { cwd: ROOT, encoding: "utf8", env, timeout: 120_000 });
    const report = JSON.parse(j.stdout) as { synthesize?: { shape: string; quant: string; path: string; bytes: number } };
    assertEquals(report.synthesize?.shape, "tiny-moe");
    assertEquals(report.synthesize?.path, model);
    assert((report.synthesize?.bytes ?? 0) > 100_000, "its size");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
