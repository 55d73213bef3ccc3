#!/usr/bin/env node
// The one test command (`npm test`): runs every test/**/*.test.ts under Node (node --test through
// tsx), Bun (bun test) and Deno (deno test), then the kernel-module test bed in qemu once, prints a
// summary per runtime and a final `N passed, N failed` line, and exits non-zero if anything failed.
//
// Options: --only=node,bun,deno,kmod (subset), or positional test file filters (substring match).
import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(import.meta.url), "../..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const args = process.argv.slice(2);
const only = (args.find((a) => a.startsWith("--only="))?.slice(7) ?? "node,bun,deno,kmod").split(",");
const filters = args.filter((a) => !a.startsWith("--"));

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (name === "fixtures" || name === "node_modules") continue;
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith(".test.ts")) out.push(relative(root, p));
  }
  return out;
}
const files = findTests(join(root, "test")).filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));

// Run a command, echo its output live, and return {code, text}.
function run(cmd, argv, env = {}) {
  return new Promise((done) => {
    const child = spawn(cmd, argv, { cwd: root, env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    const onData = (stream) => (chunk) => {
      text += chunk;
      stream.write(chunk);
    };
    child.stdout.on("data", onData(process.stdout));
    child.stderr.on("data", onData(process.stderr));
    const stop = (sig) => child.kill(sig);
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    child.on("close", (code, signal) => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      done({ code: code ?? (signal ? 128 : 1), text: text.replace(/\x1b\[[0-9;]*m/g, "") });
    });
    child.on("error", (e) => done({ code: 127, text: String(e) }));
  });
}

const last = (text, re) => {
  const all = [...text.matchAll(re)];
  return all.length ? Number(all[all.length - 1][1]) : 0;
};

const suites = {
  node: {
    run: () => run(process.execPath, ["--import", "tsx", "--test", "--test-reporter=tap", "--test-concurrency=2", ...files]),
    parse: (t) => ({ passed: last(t, /^# pass (\d+)/gm), failed: last(t, /^# fail (\d+)/gm) + last(t, /^# cancelled (\d+)/gm), skipped: last(t, /^# skipped (\d+)/gm) }),
  },
  bun: {
    run: () => run(bin("bun"), ["test", "--timeout=120000", ...files.map((f) => `./${f}`)]),
    parse: (t) => ({ passed: last(t, /^\s*(\d+) pass$/gm), failed: last(t, /^\s*(\d+) fail$/gm), skipped: last(t, /^\s*(\d+) skip$/gm) }),
  },
  deno: {
    run: () => run(bin("deno"), ["test", "-A", "--no-check", ...files]),
    parse: (t) => ({
      passed: last(t, /\| (\d+) passed/g),
      failed: last(t, /\| \d+ passed(?: \(\d+ steps?\))? \| (\d+) failed/g),
      skipped: last(t, /\| (\d+) ignored/g),
    }),
  },
  kmod: {
    // The real kernel test: the module is built and loaded in Debian's kernel under qemu.
    available: () => existsSync(join(root, "kmod/testbed/run.sh")),
    run: () => run("bash", [join(root, "kmod/testbed/run.sh")]),
    parse: (t) => ({ passed: (t.match(/^PASS: /gm) ?? []).length, failed: (t.match(/^FAIL: /gm) ?? []).length, skipped: 0 }),
  },
};

const results = [];
for (const name of ["node", "bun", "deno", "kmod"]) {
  if (!only.includes(name)) continue;
  const suite = suites[name];
  if (suite.available && !suite.available()) {
    results.push({ name, passed: 0, failed: 0, skipped: 0, code: 0, note: "not present" });
    continue;
  }
  if (name !== "kmod" && files.length === 0) continue;
  console.log(`\n===== ${name} =====`);
  const t0 = Date.now();
  const { code, text } = await suite.run();
  const r = { name, ...suite.parse(text), code, seconds: (Date.now() - t0) / 1000 };
  // A runner that exits non-zero with no failure counted still failed (crash, syntax error).
  if (code !== 0 && r.failed === 0) r.failed = 1, r.note = `exit code ${code} with no failing test counted`;
  if (code === 0 && r.passed === 0) r.failed += 1, r.note = "no test passed";
  results.push(r);
}

console.log("\n===== summary =====");
for (const r of results) {
  const extra = [r.skipped ? `${r.skipped} skipped` : "", r.seconds ? `${r.seconds.toFixed(1)} s` : "", r.note ?? ""].filter(Boolean).join(", ");
  console.log(`${r.name.padEnd(5)} ${String(r.passed).padStart(4)} passed ${String(r.failed).padStart(3)} failed${extra ? `  (${extra})` : ""}`);
}
const passed = results.reduce((s, r) => s + r.passed, 0);
const failed = results.reduce((s, r) => s + r.failed, 0);
const skipped = results.reduce((s, r) => s + r.skipped, 0);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed > 0 ? 1 : 0);
