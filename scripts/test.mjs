#!/usr/bin/env node
// The one test command (`npm test`): runs every test/**/*.test.ts under Node (node --test through
// tsx), Bun (bun test) and Deno (deno test), then the kernel-module test bed in qemu once, prints a
// summary per runtime and a final `N passed, N failed` line, and exits non-zero if anything failed.
//
// Options: --only=node,bun,deno,kmod (subset), or positional test file filters (substring match);
// --tests-from=DIR takes the *.test.ts files from DIR instead of test/ (the runner's own test).
//
// A native crash (an abort in loaded native code) ends a whole runner: bun test and deno test run
// every file in one process, so one abort would hide every other result. When a runner dies by a
// signal or exits non-zero without a summary, each file is run again in its own runner process:
// the crashed file is named and failed, the others count as they ran. (node --test already runs each
// file in its own process.)
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
const testsFrom = args.find((a) => a.startsWith("--tests-from="))?.slice(13);
const files = findTests(testsFrom ? resolve(testsFrom) : join(root, "test")).filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));

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
      done({ code: code ?? (signal ? 128 : 1), signal, text: text.replace(/\x1b\[[0-9;]*m/g, "") });
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
    run: (list = files) => run(bin("bun"), ["test", "--timeout=120000", ...list.map((f) => (f.startsWith("..") ? resolve(root, f) : `./${f}`))]),
    parse: (t) => ({ passed: last(t, /^\s*(\d+) pass$/gm), failed: last(t, /^\s*(\d+) fail$/gm), skipped: last(t, /^\s*(\d+) skip$/gm) }),
  },
  deno: {
    run: (list = files) => run(bin("deno"), ["test", "-A", "--no-check", ...list]),
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
  let { code, signal, text } = await suite.run();
  let r = { name, ...suite.parse(text), code, seconds: (Date.now() - t0) / 1000 };
  const crashed = (signal != null || (code !== 0 && r.passed + r.failed === 0)) && name !== "kmod" && name !== "node";
  if (crashed && files.length > 1) {
    // One runner process per file: the crash is confined to its file, and named.
    console.log(`\n${name}: the runner died (${signal ?? `exit code ${code}`}) with no summary; running each file on its own`);
    const sum = { passed: 0, failed: 0, skipped: 0 };
    const crashedFiles = [];
    for (const f of files) {
      const one = await suite.run([f]);
      const c = suite.parse(one.text);
      if (one.signal != null || (one.code !== 0 && c.failed === 0)) {
        crashedFiles.push(`${f} (${one.signal ?? `exit code ${one.code}`})`);
        c.failed += 1;
      }
      sum.passed += c.passed, sum.failed += c.failed, sum.skipped += c.skipped;
    }
    r = { name, ...sum, code: sum.failed ? 1 : 0, seconds: (Date.now() - t0) / 1000 };
    if (crashedFiles.length) r.note = `crashed: ${crashedFiles.join(", ")}`;
    code = r.code;
  }
  // A runner that exits non-zero with no failure counted still failed (crash, syntax error).
  if (code !== 0 && r.failed === 0) r.failed = 1, r.note = `${signal ? `killed by ${signal}` : `exit code ${code}`} with no failing test counted`;
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
