// The adapter contract covers wrapped command lines and benchmark arguments (issue 15): callers
// (spillway run -- ..., autotune, the bench harness) go through the adapter, not llama.cpp helpers.
import { test } from "node:test";
import { adapterFor, llamaBenchArgs, wrappedCommandOf } from "../engine/runtimes/mod.ts";
import { assert, assertEquals } from "./_assert.ts";

test("llama.cpp adapter: a wrapped command line read back into plan inputs; the user's flags win the merge", () => {
  const a = adapterFor("llama.cpp");
  const w = a.fromCommandLine!(["/opt/llama-server", "--model=/m/x.gguf", "--ctx-size", "8192", "-t", "8", "--port", "9"]);
  assert(w !== null);
  assertEquals(w.modelPath, "/m/x.gguf");
  assertEquals(w.planInputs.context, 8192);
  assertEquals(w.planInputs.threads, 8);
  assertEquals(w.planInputs.batch, 2048); // recipe default
  assertEquals(w.planInputs.ubatch, undefined);
  assertEquals(w.planInputs.runtime, { name: "llama.cpp", binary: "/opt/llama-server" });
  assertEquals(w.runRecipe, { file: "(command line)", binary: "/opt/llama-server", program: "server" });
  assertEquals(w.mergeArgs(["-m", "/m/x.gguf", "-ngl", "99", "-c", "4096", "-t", "16"]), ["-ngl", "99", "--model=/m/x.gguf", "--ctx-size", "8192", "-t", "8", "--port", "9"]);
  assertEquals(a.fromCommandLine!(["llama-bench", "-m", "x.gguf"]), null);
  assertEquals(a.fromCommandLine!(["llama-server", "--port", "9"]), null);
  assertEquals(a.fromCommandLine!(["python3", "-m", "x"]), null);
});

test("runtimes: the adapter that plans a wrapped command is found through the contract; others run as commands", () => {
  assertEquals(wrappedCommandOf(["llama-cli", "-m", "a.gguf", "-ub", "512"])?.adapter.name, "llama.cpp");
  assertEquals(wrappedCommandOf(["llama-cli", "-m", "a.gguf", "-ub", "512"])?.wrapped.planInputs.ubatch, 512);
  assertEquals(wrappedCommandOf(["python3", "train.py"]), null);
  assertEquals(wrappedCommandOf([]), null);
});

test("llama.cpp adapter: benchArgs is llama-bench's argument list for a plan", () => {
  const a = adapterFor("llama.cpp");
  assert(a.benchArgs !== undefined);
  assertEquals(adapterFor("vllm").benchArgs, undefined);
  assertEquals(a.benchArgs, llamaBenchArgs);
});
