// core/native_build.ts: the one hashed native builder behind the shim and the measurement helpers
// (issue 15). Hash names, atomic output, the fallback attempt, and a missing compiler named.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { compile, compileSync, sourceHash } from "../core/native_build.ts";
import { SHIM_CFLAGS, SHIM_DIR, shimContentHash, shimSourceFiles } from "../shim/build.ts";
import { assert, assertEquals, assertNotEquals, assertStringIncludes } from "./_assert.ts";

test("native build: the hash covers names (under root), contents and flags; the shim's cache name is that hash", () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-nb-"));
  try {
    writeFileSync(join(dir, "a.c"), "int main(void){return 0;}\n");
    const base = sourceHash([join(dir, "a.c")], ["-O2"], { root: dir });
    assertEquals(base.length, 16);
    assertNotEquals(sourceHash([join(dir, "a.c")], ["-O3"], { root: dir }), base);
    assertEquals(sourceHash([join(dir, "a.c")], ["-O2"], { root: dir, length: 8 }), base.slice(0, 8));
    writeFileSync(join(dir, "a.c"), "int main(void){return 1;}\n");
    assertNotEquals(sourceHash([join(dir, "a.c")], ["-O2"], { root: dir }), base);
    assertEquals(shimContentHash(), sourceHash(shimSourceFiles(), SHIM_CFLAGS, { root: SHIM_DIR }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("native build: compile writes the output whole (no temporary left), names a failure and a missing compiler", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-nb-"));
  try {
    writeFileSync(join(dir, "ok.c"), "int main(void){return 3;}\n");
    writeFileSync(join(dir, "bad.c"), "int main(void){ return }\n");
    const out = join(dir, "bin", "ok");
    assertEquals(await compile("gcc", (tmp) => ["-o", tmp, join(dir, "ok.c")], out), null);
    let status = 0;
    try {
      execFileSync(out);
    } catch (e) {
      status = (e as { status: number }).status;
    }
    assertEquals(status, 3);
    const bad = await compile("gcc", (tmp) => ["-o", tmp, join(dir, "bad.c")], join(dir, "bin", "bad"));
    assert(bad !== null && !bad.missingCompiler);
    assertStringIncludes(bad.output, "bad.c");
    const none = await compile("/nonexistent/cc", (tmp) => ["-o", tmp, join(dir, "ok.c")], join(dir, "bin", "x"));
    assert(none !== null && none.missingCompiler);
    assertEquals(readdirSync(join(dir, "bin")), ["ok"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("native build: compileSync falls back to the next attempt when one is refused", () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-nb-"));
  try {
    writeFileSync(join(dir, "ok.c"), "int main(void){return 0;}\n");
    const out = join(dir, "bin", "ok");
    const failed = compileSync("gcc", [(tmp) => ["-no-such-flag-x", "-o", tmp, join(dir, "ok.c")], (tmp) => ["-o", tmp, join(dir, "ok.c")]], out);
    assertEquals(failed, null);
    assert(existsSync(out));
    const all = compileSync("gcc", [(tmp) => ["-no-such-flag-x", "-o", tmp, join(dir, "ok.c")]], join(dir, "bin", "never"));
    assert(all !== null && !all.missingCompiler);
    assertEquals(readdirSync(join(dir, "bin")), ["ok"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
