// The structure stays (issue 15): imports point down the layers of docs/architecture.md
// (core <- ffi <- kmod/shim <- engine stages <- commands/bench <- cli.ts/mod.ts) and no file
// import circle exists (nor an #include circle among the shim's and the module's C files). The
// checker itself is shown to catch a back-up import and circles in a small planted tree.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { checkLayers, layerOf } from "../scripts/check_layers.ts";
import { assertEquals, assertStringIncludes } from "./_assert.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

test("layers: every import of the project points down the layers, and no import circle exists", () => {
  const problems = checkLayers(ROOT);
  assertEquals(problems, [], `layer check failed:\n${problems.join("\n")}`);
});

test("layers: each folder has its layer (core lowest, the CLI on top)", () => {
  const rank = (p: string): number => layerOf(p)?.rank ?? -1;
  assertEquals(rank("core/errors.ts"), 0);
  assertEquals(rank("ffi/cuda.ts") > rank("core/errors.ts"), true);
  assertEquals(rank("kmod/pool.ts") > rank("ffi/cuda.ts"), true);
  assertEquals(rank("shim/stats.ts"), rank("kmod/pool.ts"));
  assertEquals(rank("engine/planner/plan.ts") > rank("shim/stats.ts"), true);
  assertEquals(rank("commands/run.ts") > rank("engine/launch/mod.ts"), true);
  assertEquals(rank("cli.ts") > rank("commands/run.ts"), true);
  assertEquals(layerOf("kmod/testbed/guest/client_e2e.ts")?.group, "kmod/testbed");
});

test("layers: the check names a back-up import (file:line and both layers), an import circle and an #include circle", () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-layers-"));
  try {
    const put = (path: string, text: string): void => {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    };
    // A comment that looks like an import does not count; the real import on line 3 does.
    put("core/errors.ts", `// import { x } from "../engine/launch/mod.ts";\n\nimport { launch } from "../engine/launch/mod.ts";\nexport const e = launch;\n`);
    put("engine/launch/mod.ts", `export const launch = 1;\n`);
    // a.ts <-> b.ts within one folder: allowed by the layers, refused as a circle
    put("engine/model/a.ts", `export { b } from "./b.ts";\nexport const a = 1;\n`);
    put("engine/model/b.ts", `import { a } from "./a.ts";\nexport const b = a;\n`);
    put("ffi/ok.ts", `import "../core/errors.ts";\n`);
    // C: a header circle in the shim is named; a system header and a one-way include are not.
    put("shim/src/a.h", `#include <stdio.h>\n#include "b.h"\n`);
    put("shim/src/b.h", `#include "a.h"\n`);
    put("shim/src/x.c", `#include "a.h"\n#include "spillway_stats.h"\n`);
    put("shim/include/spillway_stats.h", `/* stats */\n`);
    const problems = checkLayers(dir);
    assertEquals(problems.length, 3, problems.join("\n"));
    assertStringIncludes(problems[0], "core/errors.ts:3: imports engine/launch/mod.ts: layer core (rank 0) may not import engine/launch");
    assertEquals(problems[1], "import circle: engine/model/a.ts <-> engine/model/b.ts");
    assertEquals(problems[2], "#include circle: shim/src/a.h <-> shim/src/b.h");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
