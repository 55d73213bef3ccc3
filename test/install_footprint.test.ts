// Issue 14 item 11: `npm ci` installed 993 MB, 610 MB of it node-llama-cpp's CUDA and Vulkan
// prebuilt binaries that spillway never loads (its CUDA work goes through llama.cpp binaries it
// builds or finds; node-llama-cpp runs on its CPU prebuilt). package.json maps each of them to the
// empty scripts/no-prebuilt package (a devDependency of that name, and an override with a `$`
// reference to it), so npm ci links that instead of downloading them.
import { test } from "node:test";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { ROOT } from "./_native.ts";

const json = (p: string) => JSON.parse(readFileSync(join(ROOT, p), "utf8"));
const UNUSED = /^@node-llama-cpp\/linux-x64-(cuda|cuda-ext|vulkan)$/;

test("node-llama-cpp's CUDA and Vulkan prebuilt packages map to the empty package", () => {
  const pkg = json("package.json");
  const nlc = json("node_modules/node-llama-cpp/package.json");
  const unused = Object.keys(nlc.optionalDependencies ?? {}).filter((n) => UNUSED.test(n));
  assertEquals(unused.length, 3, "node-llama-cpp still has its three linux-x64 GPU packages");
  const lock = json("package-lock.json");
  for (const name of unused) {
    assertEquals(pkg.devDependencies[name], "file:./scripts/no-prebuilt", `${name} in devDependencies`);
    assertEquals(pkg.overrides[name], `$${name}`, `${name} overridden by the root's`);
    const entry = lock.packages[`node_modules/${name}`];
    assertEquals(entry?.link, true, `${name}: the lock links it`);
    assertEquals(entry?.resolved, "scripts/no-prebuilt", `${name}: to the empty package`);
    assertEquals(lock.packages[`node_modules/node-llama-cpp/node_modules/${name}`], undefined, `${name}: no nested real copy`);
  }
  // What npm ci installed from this lock: links to the empty package, no binaries.
  for (const name of unused) {
    const p = join(ROOT, "node_modules", name);
    if (!existsSync(p)) continue; // an install that omitted it
    assertEquals(realpathSync(p), realpathSync(join(ROOT, "scripts", "no-prebuilt")), `${name} installed as the empty package`);
    assert(!existsSync(join(p, "bins")), `${name} has no binaries`);
  }
  // The CPU prebuilt the embedded default runs on is still a real package.
  if (process.platform === "linux" && process.arch === "x64") assert(existsSync(join(ROOT, "node_modules/@node-llama-cpp/linux-x64/bins")), "linux-x64 CPU binaries installed");
});
