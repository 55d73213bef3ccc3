import { defineConfig } from "tsup";

// ESM with declarations for the library (mod.ts) and the CLI (cli.ts). Dependencies stay
// external; the FFI backends are split out and loaded lazily per runtime.
export default defineConfig({
  // The node-llama-cpp worker is its own entry: spillway spawns dist/node_llama_cpp_worker.js (a
  // native abort in llama.cpp then ends the worker, not spillway).
  entry: { mod: "mod.ts", cli: "cli.ts", node_llama_cpp_worker: "engine/runtimes/node_llama_cpp_worker.ts" },
  format: ["esm"],
  target: "node20",
  platform: "node",
  dts: { entry: { mod: "mod.ts" } },
  sourcemap: true,
  clean: true,
  splitting: true,
  shims: false,
  external: ["bun:ffi", "node-llama-cpp", "@resvg/resvg-js", "koffi"],
});
