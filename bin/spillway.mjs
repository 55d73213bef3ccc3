#!/usr/bin/env node
// The installed `spillway` command: runs the built CLI (dist/, made by `npm run build`, which
// `npm ci` runs through the prepare script). A source checkout without dist/ falls back to tsx.
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

const dist = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
if (existsSync(dist)) {
  await import(pathToFileURL(dist).href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(new URL("../cli.ts", import.meta.url).href);
}
