// The transformers runtime on a machine without GPU (issue 14 item 9): the plan runs the model on
// the CPU (`--device cpu`, not cuda), and a Python without torch is caught before launch with one
// line naming the interpreter, the missing module and the pip command, instead of a traceback.
import { test } from "node:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import { RuntimeMissingError } from "../core/errors.ts";
import { checkTransformersPython } from "../engine/runtimes/transformers.ts";
import process from "node:process";
import { runCli } from "./_spillway_cli.ts";

/** A tiny llama checkpoint: config.json and one safetensors file of zeros. */
function tinyCheckpoint(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify({
    model_type: "llama", architectures: ["LlamaForCausalLM"], num_hidden_layers: 1, hidden_size: 8, intermediate_size: 16,
    num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 32, max_position_embeddings: 64, torch_dtype: "float32",
  }));
  const shapes: Record<string, number[]> = {
    "model.embed_tokens.weight": [32, 8], "model.layers.0.self_attn.q_proj.weight": [8, 8], "model.layers.0.self_attn.k_proj.weight": [8, 8],
    "model.layers.0.self_attn.v_proj.weight": [8, 8], "model.layers.0.self_attn.o_proj.weight": [8, 8], "model.layers.0.mlp.gate_proj.weight": [16, 8],
    "model.layers.0.mlp.up_proj.weight": [16, 8], "model.layers.0.mlp.down_proj.weight": [8, 16], "model.layers.0.input_layernorm.weight": [8],
    "model.layers.0.post_attention_layernorm.weight": [8], "model.norm.weight": [8], "lm_head.weight": [32, 8],
  };
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const [name, shape] of Object.entries(shapes)) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: "F32", shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(join(dir, "model.safetensors"), Buffer.concat([len, json, Buffer.alloc(off)]));
}

/** A PYTHONPATH entry under which `import torch` fails as on a machine without it. */
function noTorch(dir: string): string {
  const p = join(dir, "pythonpath");
  mkdirSync(join(p, "torch"), { recursive: true });
  writeFileSync(join(p, "torch", "__init__.py"), "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n");
  return p;
}

function withTmp(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "spillway-tf-"));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function recipe(dir: string, pythonPath: string): string {
  tinyCheckpoint(join(dir, "model"));
  const r = join(dir, "tf.json5");
  writeFileSync(r, JSON.stringify({
    model: { path: join(dir, "model") },
    runtime: { name: "transformers", env: { PYTHONPATH: pythonPath } },
    hardware: "cpu-only",
    context: 64,
    workload: { promptTokens: 8, generatedTokens: 4 },
  }));
  return r;
}

test("transformers on cpu-only: --device cpu in the launched command (CLI --dry-run)", () =>
  withTmp((dir) => {
    const r = runCli(["run", recipe(dir, noTorch(dir)), "--dry-run"]);
    assertEquals(r.status, 0, r.stderr);
    assertMatch(r.stdout, /--device cpu/);
    assert(!/--device cuda/.test(r.stdout), r.stdout);
  }));

test("transformers without torch: one line saying what to install, no traceback, nothing launched (CLI)", () =>
  withTmp((dir) => {
    const r = runCli(["run", recipe(dir, noTorch(dir))]);
    assertEquals(r.status, 2, r.stderr);
    assertMatch(r.stderr, /transformers: 'python3'.* cannot import torch/);
    assertMatch(r.stderr, /pip install torch --index-url https:\/\/download\.pytorch\.org\/whl\/cpu/);
    assert(!/Traceback/.test(r.stderr + r.stdout), r.stderr);
  }));

test("checkTransformersPython: a missing interpreter is RuntimeMissingError; a good one passes", () =>
  withTmp((dir) => {
    assertThrows(() => checkTransformersPython(join(dir, "no-python"), process.env), RuntimeMissingError);
    const e = assertThrows(() => checkTransformersPython("python3", { ...process.env, PYTHONPATH: noTorch(dir) }, "cuda"), RuntimeMissingError);
    assertMatch(e.message, /python3 -m pip install torch transformers accelerate/);
    // An interpreter where both import (stand-in modules) passes the check.
    const ok = join(dir, "ok");
    mkdirSync(join(ok, "torch"), { recursive: true });
    mkdirSync(join(ok, "transformers"), { recursive: true });
    writeFileSync(join(ok, "torch", "__init__.py"), "");
    writeFileSync(join(ok, "transformers", "__init__.py"), "");
    checkTransformersPython("python3", { ...process.env, PYTHONPATH: ok });
  }));
