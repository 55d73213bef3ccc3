#!/usr/bin/env node
// The installed `spillway` command: runs the built CLI (dist/, made by `npm run build`, which
// `npm ci` runs through the prepare script). A source checkout without dist/ falls back to tsx.
// It runs in this process (no extra child), so signals sent to it reach spillway itself.
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

// Under `npx` without the project's .npmrc (spillway installed as someone's dependency), npm runs
// `sh -c spillway ...`; dash does not exec, so a SIGTERM/SIGHUP sent to npx ends npm and that shell
// but never reaches spillway, which ran on as an orphan. When the parent goes away, hang up as a
// closed terminal would: the run stops its runtime and exits.
if (process.env.npm_command === "exec") {
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(watch);
    process.kill(process.pid, "SIGHUP");
  }, 250);
  watch.unref();
}

const dist = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
if (existsSync(dist)) {
  await import(pathToFileURL(dist).href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(new URL("../cli.ts", import.meta.url).href);
}
