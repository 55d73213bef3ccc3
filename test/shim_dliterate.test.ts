// Issue 18 item 9: the shim looked a runtime loaded RTLD_LOCAL up by calling dlopen inside its
// dl_iterate_phdr callback, while glibc holds the loader's write lock; a dlopen in another thread
// holds the load lock and waits for the write lock: deadlock. test/fixtures/fakecuda/dliterate.c
// makes that interleaving certain (the other thread's dlopen starts inside the callback).
import { test } from "node:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import process from "node:process";
import { assert, assertEquals } from "./_assert.ts";
import { buildC } from "./_native.ts";
import { fakeCudaDir, testShim } from "./shim_helpers.ts";

test("issue 18 item 9: no dlopen inside dl_iterate_phdr (a concurrent dlopen does not deadlock the runtime lookup)", async () => {
  const prog = buildC("dliterate", ["test/fixtures/fakecuda/dliterate.c"], ["-ldl", "-lpthread", "-Wl,--export-dynamic-symbol=dl_iterate_phdr"]);
  // A library no test program has loaded: its dlopen must map it, which takes both loader locks.
  const second = buildC("libdliterate_second.so", ["test/fixtures/fakecuda/dliterate.c"], ["-shared", "-fPIC", "-DDLITERATE_LIBRARY"]);
  const dir = fakeCudaDir();
  const r = spawnSync(prog, [join(dir, "libcudart.so.13"), second], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LD_LIBRARY_PATH: dir, LD_PRELOAD: await testShim(), SPILLWAY_LOG: "error" },
    encoding: "utf8",
    timeout: 10_000,
  });
  assert(r.signal === null, `the lookup deadlocked (killed by ${r.signal} after 10 s): stderr ${r.stderr}`);
  assertEquals(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim());
  assertEquals(out.fired, true, "the second thread's dlopen ran during the shim's dl_iterate_phdr");
  assertEquals(out.r, 0, "cudaMalloc through the runtime found by walking the loaded objects");
});
