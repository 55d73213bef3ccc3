// Hints that pointed the wrong way (issue 14 item 8): `kmod build` names its real option (--kdir);
// a file that exists but is not executable is not "not found, install it"; "set `binary` in the
// recipe" only where there is a recipe whose `binary` is not set; `synth` without a shape says so.
import { test } from "node:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { runCli } from "./_spillway_cli.ts";
import { synthesize } from "../engine/model/synth.ts";

async function withTmp(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "spillway-hints-"));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("kmod build without kernel headers: the hint names --kdir, the option that exists (CLI)", () =>
  withTmp((dir) => {
    const r = runCli(["kmod", "build", "--kdir", join(dir, "no-headers")]);
    assertEquals(r.status, 1, r.stderr);
    assertMatch(r.stderr, /pass --kdir <dir>/);
    assert(!r.stderr.includes("--kernel-dir"), r.stderr);
    // The option the hint names is one the command accepts.
    assertMatch(runCli(["kmod", "--help"]).stdout, /--kdir <dir>/);
  }));

test("run -- a file that exists but is not executable: says so, not 'not found, install it' (CLI)", () =>
  withTmp((dir) => {
    const data = join(dir, "notes.txt");
    writeFileSync(data, "not a program\n", { mode: 0o644 });
    for (const [prog, why] of [[data, /exists but is not executable \(mode 644\)/], [dir, /is a directory, not a program/]] as const) {
      const r = runCli(["run", "--", prog]);
      assertEquals(r.status, 2, r.stderr);
      assertMatch(r.stderr, why);
      assert(!/not found|Install/.test(r.stderr), r.stderr);
    }
  }));

test("a missing llama.cpp: recipe advice only where there is a recipe without `binary` (CLI)", () =>
  withTmp(async (dir) => {
    const model = join(dir, "tiny.gguf");
    await synthesize({ shape: "tiny-moe", quant: "Q8_0", out: model });
    const empty = join(dir, "empty-path");
    mkdirSync(empty);
    const env = { PATH: empty };
    // No recipe: the command was typed after `--`.
    const wrapped = runCli(["run", "--", "llama-server", "-m", model], { env });
    assertEquals(wrapped.status, 2, wrapped.stderr);
    assertMatch(wrapped.stderr, /'llama-server' was not found\. Install llama\.cpp .* or give the program's full path\./);
    assert(!wrapped.stderr.includes("in the recipe"), wrapped.stderr);
    // A recipe that sets `binary`: the set path is what is wrong.
    const withBinary = join(dir, "bin.json5");
    writeFileSync(withBinary, JSON.stringify({ model: { path: model }, runtime: { name: "llama.cpp", binary: join(dir, "nope", "llama-server") }, hardware: "cpu-only" }));
    const b = runCli(["run", withBinary], { env });
    assertEquals(b.status, 2, b.stderr);
    assertMatch(b.stderr, /runtime\.binary in .*bin\.json5 is '.*nope\/llama-server': correct that path\./);
    assert(!b.stderr.includes("set `binary`"), b.stderr);
    // A recipe without `binary`: setting it is good advice.
    const plain = join(dir, "plain.json5");
    writeFileSync(plain, JSON.stringify({ model: { path: model }, runtime: { name: "llama.cpp" }, hardware: "cpu-only" }));
    const p = runCli(["run", plain], { env });
    assertEquals(p.status, 2, p.stderr);
    assertMatch(p.stderr, /or set `binary` in the recipe to the program's path\./);
  }));

test("synth without a shape: exit 2 with a message naming what is missing (CLI)", () => {
  const r = runCli(["synth"]);
  assertEquals(r.status, 2);
  assertMatch(r.stderr, /spillway synth: missing the shape to write/);
  assertMatch(r.stderr, /tiny-moe/);
  const list = runCli(["synth", "--list"]);
  assertEquals(list.status, 0);
  assertMatch(list.stdout, /^tiny-moe /m);
});
