// Issue 14 item 2: under bun test and deno test every file shares one process, so one native abort
// read "0 passed, 1 failed" and hid every other result. scripts/test.mjs now runs each file on its
// own when a runner dies: the crashed file is named and the other files' tests still count.
import { test } from "node:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { assertEquals, assertMatch } from "./_assert.ts";
import { ROOT } from "./_native.ts";

const node = process.versions.bun || process.versions.deno ? "node" : process.execPath;

for (const runtime of ["bun", "deno"]) {
  test(`scripts/test.mjs (${runtime}): a planted abort fails its file by name, the other files still run`, () => {
    const dir = mkdtempSync(join(tmpdir(), "spillway-runner-"));
    try {
      writeFileSync(join(dir, "a_fine.test.ts"), `import { test } from "node:test";\ntest("one", () => {});\ntest("two", () => {});\n`);
      writeFileSync(join(dir, "b_abort.test.ts"), `import { test } from "node:test";\nimport process from "node:process";\ntest("aborts natively", () => { process.abort(); });\n`);
      writeFileSync(join(dir, "c_fine.test.ts"), `import { test } from "node:test";\ntest("three", () => {});\n`);
      const r = spawnSync(node, [join(ROOT, "scripts", "test.mjs"), `--only=${runtime}`, `--tests-from=${dir}`], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
      assertEquals(r.status, 1, r.stdout + r.stderr);
      assertMatch(r.stdout, new RegExp(`${runtime}: the runner died \\(SIGABRT\\)`));
      assertMatch(r.stdout, new RegExp(`${runtime}\\s+3 passed\\s+1 failed .*crashed: \\S*b_abort\\.test\\.ts \\(SIGABRT\\)`));
      assertMatch(r.stdout, /^3 passed, 1 failed$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
