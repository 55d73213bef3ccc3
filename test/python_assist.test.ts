// What `spillway run -- python3 script.py` does from outside (engine/runtimes/python_assist.ts):
// PyTorch's environment, the access-aware map of the model named in argv or the HF cache, hints.
import { test } from "node:test";
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findModel, isAssistMap, isPythonCommand, pythonAssist, weightsBudgetFor } from "../engine/runtimes/python_assist.ts";
import { assert, assertEquals, assertMatch } from "./_assert.ts";

const MiB = 2 ** 20;
const TINY = { hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 4, num_attention_heads: 32, num_key_value_heads: 4, vocab_size: 32000, torch_dtype: "bfloat16" };

/** A safetensors file of bf16 tensors (data left sparse: only the header is read). */
function writeSafetensors(path: string, tensors: [string, number[]][]): void {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const [name, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: "BF16", shape, data_offsets: [off, off + n] };
    off += n;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(path, "w");
  writeSync(fd, len);
  writeSync(fd, json);
  ftruncateSync(fd, 8 + json.length + off);
  closeSync(fd);
}

test("python assist: Python commands only; the user's own settings win", () => {
  assert(isPythonCommand(["python3", "x.py"]) && isPythonCommand(["/usr/bin/python3.12"]) && isPythonCommand(["torchrun", "x.py"]));
  assert(!isPythonCommand(["llama-server", "-m", "x.gguf"]));
  assertEquals(pythonAssist(["llama-server"], {}, { minSpill: 32 * MiB, mapDir: null, vramForWeights: 1 }).env, {});
  const own = pythonAssist(["python3", "x.py"], { TORCH_CUDNN_SDPA_DEPRIORITIZED: "0", SPILLWAY_PLACEMENT: "/my.map", XLA_PYTHON_CLIENT_MEM_FRACTION: ".5" }, { minSpill: 32 * MiB, mapDir: null, vramForWeights: 1 });
  assertEquals(own.env, {});
  assertEquals(own.hints, []);
  const none = pythonAssist(["python3", "x.py"], {}, { minSpill: 32 * MiB, mapDir: null, vramForWeights: 1 });
  assertEquals(none.env, { TORCH_CUDNN_SDPA_DEPRIORITIZED: "1", XLA_PYTHON_CLIENT_PREALLOCATE: "false" });
  assertMatch(none.hints[0]!, /XLA_PYTHON_CLIENT_PREALLOCATE=false: JAX would otherwise take 75%/);
  assertMatch(none.hints[1]!, /no model directory or Hugging Face id found/);
  // Any XLA client setting of the user's (preallocation on, a fraction, the allocator) is theirs.
  for (const k of ["XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_ALLOCATOR"]) {
    assertEquals(pythonAssist(["python3", "x.py"], { [k]: "true" }, { minSpill: 32 * MiB, mapDir: null, vramForWeights: 1 }).env.XLA_PYTHON_CLIENT_PREALLOCATE, undefined);
  }
  assertEquals(weightsBudgetFor(12 * 2 ** 30, 2 ** 30), 10.6 * 2 ** 30);
});

test("python assist: the model from argv (path, --opt=path) or the HF cache; a private map puts the embedding first", () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-assist-"));
  try {
    const model = join(dir, "tiny");
    mkdirSync(model);
    writeFileSync(join(model, "config.json"), JSON.stringify(TINY));
    assertEquals(findModel(["python3", "run.py", "--model", model], {}), model);
    assertEquals(findModel(["python3", "run.py", `--model=${model}`], {}), model);
    const hub = join(dir, "hub");
    const snap = join(hub, "models--org--tiny", "snapshots", "abc123");
    mkdirSync(snap, { recursive: true });
    writeFileSync(join(snap, "config.json"), JSON.stringify(TINY));
    assertEquals(findModel(["python3", "run.py", "org/tiny"], { HF_HUB_CACHE: hub }), snap);
    assertEquals(findModel(["python3", "run.py", "org/other"], { HF_HUB_CACHE: hub }), null);

    // config.json only: the shape gives the tensors.
    const a = pythonAssist(["python3", "run.py", model], {}, { vramForWeights: 400 * MiB, minSpill: 16 * MiB, mapDir: dir });
    assert(a.map !== null && isAssistMap(a.map.path));
    assertEquals(a.env.SPILLWAY_PLACEMENT, a.map.path);
    assertEquals(statSync(a.map.path).mode & 0o777, 0o600);
    const lines = readFileSync(a.map.path, "utf8").split("\n").filter((l) => l && !l.startsWith("#"));
    assertEquals(lines[0], "nth=0 min=16777216 host  # model.embed_tokens.weight");
    assert(lines.slice(1).every((l) => l.includes("model.layers.3.")), lines.join("\n"));

    // safetensors headers (keys sorted by name, as files store them) win over config.json.
    const st = join(dir, "st");
    mkdirSync(st);
    writeFileSync(join(st, "config.json"), JSON.stringify(TINY));
    writeSafetensors(join(st, "model.safetensors"), [
      ["lm_head.weight", [32000, 2048]],
      ["model.embed_tokens.weight", [32000, 2048]],
      ["model.layers.0.mlp.down_proj.weight", [2048, 5632]],
      ["model.layers.0.mlp.gate_proj.weight", [5632, 2048]],
      ["model.layers.1.mlp.down_proj.weight", [2048, 5632]],
      ["model.layers.1.mlp.gate_proj.weight", [5632, 2048]],
      ["model.norm.weight", [2048]],
    ]);
    const b = pythonAssist(["python3", "gen.py", join(st, "model.safetensors")], {}, { vramForWeights: 180 * MiB, minSpill: 16 * MiB, mapDir: null });
    assertEquals(b.model, st);
    assertEquals(b.map!.plan.allocations.filter((x) => x.place === "host").map((x) => x.tensors[0]), [
      "model.embed_tokens.weight", "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.down_proj.weight",
    ]);
    assertEquals(b.env.SPILLWAY_PLACEMENT, undefined, "dry run: nothing written");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("transformers recipe: the shim gets the access-aware rules inline (embedding first); a recipe's env wins", async () => {
  const { transformersLaunchSpec } = await import("../engine/runtimes/transformers.ts");
  const dir = mkdtempSync(join(tmpdir(), "spillway-tf-"));
  try {
    writeFileSync(join(dir, "config.json"), JSON.stringify(TINY));
    const shim = { vramBudgetBytes: 400 * MiB, reserveBytes: 2 ** 30, minSpillBytes: 16 * MiB, backing: "auto" as const, report: "vram+host" as const };
    const plan = {
      settings: { threads: 4, shim },
      workload: { promptTokens: 512, generatedTokens: 32 },
      model: { path: join(dir, "config.json") },
    } as unknown as Parameters<typeof transformersLaunchSpec>[0];
    const spec = transformersLaunchSpec(plan, null, { shimPath: "/opt/libspillway_shim.so" });
    const rules = spec.env.SPILLWAY_PLACEMENT_RULES!.split(";");
    assertEquals(rules[0], "nth=0 min=16777216 host");
    assert(rules.length > 1 && rules.every((r) => /^nth=\d+ min=16777216 host$/.test(r)), rules.join(";"));
    const own = transformersLaunchSpec(plan, { env: { SPILLWAY_PLACEMENT_RULES: "* auto" } } as never, { shimPath: "/opt/libspillway_shim.so" });
    assertEquals(own.env.SPILLWAY_PLACEMENT_RULES, "* auto");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("spillway run -- python3 …: the map reaches the command through SPILLWAY_PLACEMENT and is removed after it; a dry run writes nothing", async () => {
  const { runCommand } = await import("../commands/run.ts");
  const { testShim } = await import("./shim_helpers.ts");
  const dir = mkdtempSync(join(tmpdir(), "spillway-run-py-"));
  try {
    const model = join(dir, "llama8b");
    mkdirSync(model);
    writeFileSync(join(model, "config.json"), JSON.stringify({ ...TINY, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_key_value_heads: 8, vocab_size: 128256 }));
    const seen = join(dir, "seen");
    // The "script" records the map path and text it was given.
    const code = "import os,sys; p=os.environ['SPILLWAY_PLACEMENT']; open(sys.argv[1],'w').write(p+'\\n'+os.environ['TORCH_CUDNN_SDPA_DEPRIORITIZED']+'\\n'+open(p).read())";
    const argv = ["python3", "-c", code, seen, model];
    let out = "", err = "";
    const dry = await runCommand(null, argv, { dryRun: true, hardware: "h200-12gib-free", out: (s) => (out += s), err: (s) => (err += s) });
    assertEquals(dry, 0);
    assertMatch(out, /TORCH_CUDNN_SDPA_DEPRIORITIZED=1/);
    assert(!out.includes("SPILLWAY_PLACEMENT="), "a dry run writes no map");
    assertMatch(err, /runtime: transformers in a recipe/);
    const status = await runCommand(null, argv, { hardware: "h200-12gib-free", shimPath: await testShim(), out: () => {}, err: () => {} });
    assertEquals(status, 0);
    const [path, flag, ...map] = readFileSync(seen, "utf8").split("\n");
    assertEquals(flag, "1");
    assert(map.includes("nth=0 min=33554432 host  # model.embed_tokens.weight"), map.slice(0, 3).join("\n"));
    assert(isAssistMap(path) && !existsSync(path!), `map ${path} removed after the run`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("command recipe: a Python command naming its model gets the rules inline and PyTorch's environment; other commands do not", async () => {
  const { commandLaunchSpec } = await import("../engine/runtimes/command_adapter.ts");
  const dir = mkdtempSync(join(tmpdir(), "spillway-cmd-"));
  try {
    writeFileSync(join(dir, "config.json"), JSON.stringify(TINY));
    const shim = { vramBudgetBytes: 400 * MiB, reserveBytes: 2 ** 30, minSpillBytes: 16 * MiB, backing: "auto" as const, report: "vram+host" as const };
    const plan = { settings: { shim }, model: { path: join(dir, "config.json") } } as unknown as Parameters<typeof commandLaunchSpec>[0];
    const py = commandLaunchSpec(plan, { command: ["python3", "serve.py"] } as never, { shimPath: "/opt/libspillway_shim.so" });
    assertEquals(py.env.SPILLWAY_PLACEMENT_RULES!.split(";")[0], "nth=0 min=16777216 host");
    assertEquals(py.env.TORCH_CUDNN_SDPA_DEPRIORITIZED, "1");
    assertEquals(py.env.XLA_PYTHON_CLIENT_PREALLOCATE, "false");
    // The recipe's own env wins.
    const own = commandLaunchSpec(plan, { command: ["python3", "serve.py"], env: { XLA_PYTHON_CLIENT_PREALLOCATE: "true" } } as never, { shimPath: "/opt/libspillway_shim.so" });
    assertEquals(own.env.XLA_PYTHON_CLIENT_PREALLOCATE, "true");
    const other = commandLaunchSpec(plan, { command: ["./my-cuda-app"] } as never, { shimPath: "/opt/libspillway_shim.so" });
    assertEquals([other.env.SPILLWAY_PLACEMENT_RULES, other.env.TORCH_CUDNN_SDPA_DEPRIORITIZED, other.env.XLA_PYTHON_CLIENT_PREALLOCATE], [undefined, undefined, undefined]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
