// Issue 22: the llama.cpp patch set (runtimes/llama.cpp/patches/) applies cleanly to the source
// node-llama-cpp bundles, and the C/C++ files it touches still compile (a CPU-only build of their
// objects; CUDA sources are built on the GPU machine).
import { test } from "node:test";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hasProgram } from "../core/native_build.ts";
import { assert, assertEquals, assertMatch } from "./_assert.ts";

const ROOT = process.cwd();
const SCRIPT = join(ROOT, "runtimes", "llama.cpp", "build.sh");
const PATCHES = join(ROOT, "runtimes", "llama.cpp", "patches");
const BUNDLE = join(ROOT, "node_modules", "node-llama-cpp", "llama", "gitRelease.bundle");

/** Files a patch changes (its `+++ b/...` lines). */
function touched(patch: string): string[] {
  return [...patch.matchAll(/^\+\+\+ b\/(\S+)$/gm)].map((m) => m[1]!);
}

test("llama.cpp patches: one concern each, documented, and they apply to the bundled source", () => {
  const names = readdirSync(PATCHES).filter((n) => n.endsWith(".patch")).sort();
  assertEquals(names.length, 9);
  for (const n of names) {
    assertMatch(n, /^\d{4}-[a-z0-9-]+\.patch$/);
    const text = readFileSync(join(PATCHES, n), "utf8");
    assertMatch(text, /^Subject: \[PATCH[^\]]*\] \S/m);
    assert(touched(text).length > 0, `${n} changes no file`);
  }
  assert(existsSync(BUNDLE), `${BUNDLE} missing (npm ci installs node-llama-cpp)`);
  const out = execFileSync("bash", [SCRIPT, "--check"], { encoding: "utf8" });
  assertMatch(out, /9 patches apply to llama\.cpp [0-9a-f]{40}/);
});

test("llama.cpp patches: the touched C/C++ files compile (CPU-only objects)", { skip: !hasProgram("cmake") || !hasProgram("g++") || !hasProgram("ninja") ? "cmake, g++ or ninja missing" : false }, () => {
  const dir = mkdtempSync(join(tmpdir(), "llama-patches-"));
  try {
    const src = join(dir, "src");
    execFileSync("git", ["clone", "-q", BUNDLE, src], { stdio: "pipe" });
    const files = new Set<string>();
    for (const n of readdirSync(PATCHES).filter((x) => x.endsWith(".patch")).sort()) {
      execFileSync("git", ["-C", src, "apply", join(PATCHES, n)], { stdio: "pipe" });
      for (const f of touched(readFileSync(join(PATCHES, n), "utf8"))) files.add(f);
    }
    const build = join(dir, "build");
    execFileSync("cmake", ["-S", src, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DLLAMA_BUILD_TESTS=OFF",
      "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF"], { stdio: "pipe" });
    // The object targets of the touched C/C++ sources (CUDA sources are not configured here; tools are,
    // for patch 0009's llama-perplexity).
    const cpp = [...files].filter((f) => /\.(c|cpp)$/.test(f));
    assert(cpp.length >= 3, cpp.join(","));
    const targets = execFileSync("ninja", ["-C", build, "-t", "targets", "all"], { encoding: "utf8" }).split("\n")
      .map((l) => l.replace(/:.*$/, "").trim())
      .filter((t) => cpp.some((f) => t.endsWith(`/${f.split("/").pop()}.o`)));
    assertEquals(targets.length, cpp.length, `objects for ${cpp.join(", ")}: ${targets.join(", ")}`);
    execFileSync("ninja", ["-C", build, "-j", "2", ...targets], { stdio: "pipe" });
    for (const t of targets) assert(existsSync(join(build, t)), `${t} not built`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
