// Issue 14 items 7 and 10: the README's commands go through `npx spillway`. Signals sent to npx
// never reached spillway (npm ran `sh -c spillway`, and dash neither execs nor passes them on),
// so a generation ran to completion after SIGINT. These tests run the built CLI through npx as a
// user does: Ctrl-C in a real terminal (tmux), SIGINT to the npx process, SIGTERM to npx with a
// non-exec'ing shell in between, and `spillway top` in a terminal and into a pipe.
// They test npx and the built CLI, not the JavaScript runtime: they run once, under node.
import { test } from "node:test";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { ROOT } from "./_native.ts";
import { synthesize } from "../engine/model/synth.ts";

const underNode = !process.versions.bun && !process.versions.deno;
const skipRuntime = underNode ? false : "runs once, under node: it tests npx and the built CLI";
const npx = "npx";

/** tmux, installed with apt-get when missing and we are root (as .ci/run does); null if impossible. */
function tmux(): string | null {
  const has = (): boolean => spawnSync("tmux", ["-V"], { stdio: "ignore" }).status === 0;
  if (has()) return "tmux";
  if (process.getuid?.() === 0) {
    spawnSync("apt-get", ["install", "-y", "-qq", "tmux"], { stdio: "ignore", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    if (has()) return "tmux";
  }
  return null;
}
const skipTmux = skipRuntime || (tmux() === null ? "tmux is not installed and could not be installed (apt-get install tmux)" : false);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `get()` until `re` matches (returns the text) or `ms` pass (throws with the last text). */
async function waitFor(get: () => string, re: RegExp, ms: number, what: string): Promise<string> {
  const end = Date.now() + ms;
  let text = "";
  while (Date.now() < end) {
    text = get();
    if (re.test(text)) return text;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what} (${re}); last output:\n${text}`);
}

/** Processes whose command line contains `needle` (excluding our own pgrep). */
function processesWith(needle: string): string[] {
  const r = spawnSync("pgrep", ["-af", needle], { encoding: "utf8" });
  return r.stdout.split("\n").filter((l) => l.trim() && !l.includes("pgrep"));
}

// Runs argv (no shell) and writes how it ended ("status N" / "signal SIGX") to a file: tmux's own
// record of a dead pane is sometimes missing under load. It ignores SIGINT itself (it shares the
// terminal's foreground group with what it runs) and waits synchronously.
const RECORDER = `const { spawnSync } = require("node:child_process"); process.on("SIGINT", () => {});
const [file, cmd, ...args] = process.argv.slice(2);
const r = spawnSync(cmd, args, { stdio: "inherit" });
require("node:fs").writeFileSync(file, r.signal ? "signal " + r.signal : "status " + r.status);`;

/**
 * A tmux server of our own (its own socket) running `argv` (no shell) in a 200x50 terminal in the
 * repository, through RECORDER; `dead()` gives how it ended ("" while it runs).
 */
function tmuxSession(argv: string[]) {
  const sock = `spillway-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const ended = join(tmpdir(), `${sock}.status`);
  const recorder = join(tmpdir(), `${sock}.cjs`);
  writeFileSync(recorder, RECORDER);
  const t = (...a: string[]) => execFileSync("tmux", ["-L", sock, ...a], { encoding: "utf8" });
  t("new-session", "-d", "-s", "t", "-x", "200", "-y", "50", "-c", ROOT, process.execPath, recorder, ended, ...argv);
  t("set-option", "-t", "t", "remain-on-exit", "on"); // keep the output readable after the end
  return {
    pane: () => { try { return t("capture-pane", "-p", "-t", "t", "-S", "-200"); } catch { return ""; } },
    dead: () => { try { return readFileSync(ended, "utf8"); } catch { return ""; } },
    keys: (...k: string[]) => t("send-keys", "-t", "t", ...k),
    kill: () => {
      try { t("kill-server"); } catch { /* already gone */ }
      rmSync(ended, { force: true });
      rmSync(recorder, { force: true });
    },
  };
}

test("Ctrl-C in a terminal stops `npx spillway run` mid-generation: exit 130, no worker left", { skip: skipTmux }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-npx-"));
  const model = join(dir, "ctrlc-model.gguf");
  await synthesize({ shape: "tiny-moe", quant: "Q8_0", out: model, seed: 3 });
  const recipe = join(dir, "long.json5");
  writeFileSync(recipe, `{ model: { path: ${JSON.stringify(model)} }, runtime: { name: "node-llama-cpp", prompt: "Hello" },
    context: 8192, batch: 256, ubatch: 256, threads: 2, workload: { promptTokens: 16, generatedTokens: 8000 } }`);
  const s = tmuxSession([npx, "spillway", "run", recipe]);
  try {
    await waitFor(s.pane, /^generate \[/m, 90_000, "the generate progress bar");
    assert(processesWith(model).length > 0, "the node-llama-cpp worker runs");
    s.keys("C-c");
    const end = await waitFor(s.dead, /./, 15_000, "npx to return after Ctrl-C");
    assertEquals(end, "status 130", s.pane());
    await sleep(300);
    assertEquals(processesWith(model), [], "no worker left");
  } finally {
    s.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("one Ctrl-C in a terminal under npx is one SIGINT: the child shuts down by itself, no SIGKILL", { skip: skipTmux }, async () => {
  // The terminal's SIGINT and npm's forwarded copy both reach spillway; the copy must not count as
  // the second, forcing Ctrl-C (which SIGKILLs the runtime in the middle of its shutdown).
  const s = tmuxSession([npx, "spillway", "run", "--", "sh", "-c", "trap 'echo got-INT; sleep 0.5; echo clean-exit; exit 0' INT; echo child-ready; while :; do sleep 0.1; done"]);
  try {
    await waitFor(s.pane, /child-ready/, 60_000, "the child to start");
    s.keys("C-c");
    await waitFor(s.dead, /./, 15_000, "npx to return");
    const text = s.pane();
    assertMatch(text, /got-INT[\s\S]*clean-exit/);
    assert(!text.includes("SIGKILL"), `no SIGKILL:\n${text}`);
  } finally {
    s.kill();
  }
});

test("spillway top in a terminal through npx: live redraw, Ctrl-C quits cleanly", { skip: skipTmux }, async () => {
  const s = tmuxSession([npx, "spillway", "top"]);
  try {
    await waitFor(s.pane, /\(Ctrl-C to quit\)/, 60_000, "the live view");
    s.keys("C-c");
    const end = await waitFor(s.dead, /./, 10_000, "top to quit");
    const text = s.pane();
    // top itself exits 0; npm, which got the same Ctrl-C, sometimes ends by that signal instead.
    assertMatch(end, /^(status 0|signal SIGINT)$/);
    assert(!/Error|at .*\.js:\d+/.test(text), `no error or stack trace:\n${text}`);
    assertMatch(text, /PID\s+VRAM/, "the table was drawn");
    assertEquals(processesWith(".bin/spillway top"), [], "top is gone");
  } finally {
    s.kill();
  }
});

test("spillway top into a pipe: plain tables per refresh, no escape codes", { skip: skipRuntime }, async () => {
  const child = spawn(npx, ["spillway", "top"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  const done = new Promise<number | null>((r) => child.on("close", (c) => r(c)));
  await waitFor(() => out, /^--- [\s\S]*^--- /m, 60_000, "two refreshes");
  child.kill("SIGINT");
  await done;
  assert(!out.includes("\x1b"), `no escape codes in: ${JSON.stringify(out.slice(0, 200))}`);
  assert((out.match(/^--- \d{4}-\d\d-\d\dT/gm) ?? []).length >= 2, "a timestamped table per refresh");
});

/** `npx spillway run -- sleep <unique>` in its own process group (not a terminal's). */
async function npxSleep(env: Record<string, string> = {}) {
  const mark = `${600 + Math.floor(Math.random() * 300)}.${process.pid}`;
  const child = spawn(npx, ["spillway", "run", "--", "sleep", mark], { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  child.stdout.on("data", (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: string | null; ms: number }>((r) => {
    let t0 = 0;
    child.on("close", (code, signal) => r({ code, signal, ms: Date.now() - t0 }));
    waitFor(() => err, /launch/, 60_000, "launch").then(() => (t0 = Date.now()), () => {});
  });
  await waitFor(() => err, /launch\s+sleep/, 60_000, "spillway to launch sleep");
  await waitFor(() => processesWith(`sleep ${mark}`).join("\n"), /sleep/, 10_000, "sleep to start");
  return { pid: child.pid!, mark, exited, output: () => err };
}

test("SIGINT to the npx process reaches spillway: the child stops, npx exits 130", { skip: skipRuntime }, async () => {
  const r = await npxSleep();
  process.kill(r.pid, "SIGINT");
  const e = await r.exited;
  assertEquals(e.code, 130, r.output());
  assert(e.ms < 10_000, `took ${e.ms} ms`);
  assertEquals(processesWith(`sleep ${r.mark}`), []);
});

test("SIGTERM to npx with a non-exec'ing sh in between: spillway notices and stops its child", { skip: skipRuntime || (existsSync("/bin/sh") ? false : "no /bin/sh") }, async () => {
  const r = await npxSleep({ npm_config_script_shell: "sh" });
  process.kill(r.pid, "SIGTERM");
  await r.exited;
  // npm and sh are gone at once; spillway (now an orphan) sees it within its 250 ms watch.
  await waitFor(() => (processesWith(`sleep ${r.mark}`).length === 0 ? "gone" : ""), /gone/, 8_000, "the sleep child to stop");
  assertEquals(processesWith(`spillway run -- sleep ${r.mark}`), [], "no spillway left");
});
