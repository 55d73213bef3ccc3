#!/usr/bin/env python3
"""spillway's transformers entry: load a Hugging Face model directory (or build a random-init model
from its config.json when it holds no weights), run a prompt and a generation, and print one JSON
line with prefill and decode tokens/s.

Placement comes from the command line that spillway's transformers adapter writes:
  --device cuda                      the whole model on the GPU (the shim, when applied, spills)
  --device-map auto --max-memory J   accelerate's native offload with max_memory J (JSON, bytes)
--print-args prints the parsed arguments as JSON and exits without importing torch.
"""
import argparse
import json
import os
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model directory (config.json, optional weights)")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default=None, help="put the whole model on this device (e.g. cuda)")
    p.add_argument("--device-map", default=None, help="accelerate device_map (e.g. auto)")
    p.add_argument("--max-memory", default=None, help='JSON {"0": bytes, "cpu": bytes}')
    p.add_argument("--prompt", default=None, help="prompt text; random token ids when absent")
    p.add_argument("--dtype", default="auto", help="torch dtype name or auto")
    p.add_argument("--random-init", action="store_true", help="ignore weights, build from config")
    p.add_argument("--attention", default="no-cudnn", choices=["no-cudnn", "default", "flash", "efficient", "cudnn", "math"],
                   help="SDPA backends: no-cudnn (default) lets flash / memory-efficient run; cuDNN's per-shape "
                        "host cost grew decode steps ~3x with a growing KV cache (bench/gpu/torch_decode_probe.py)")
    p.add_argument("--decode", default="graph", choices=["graph", "static", "dynamic"],
                   help="graph: static KV cache + one CUDA graph per decode step (falls back to static, then "
                        "dynamic, when capture fails); static: static KV cache, eager; dynamic: transformers' DynamicCache")
    p.add_argument("--warmup", type=int, default=1, help="untimed prefill + decode rounds first")
    p.add_argument("--save-logits", default=None, help="write prefill logits (last 64 positions) and tokens (torch.save)")
    p.add_argument("--print-args", action="store_true")
    a = p.parse_args(argv)
    if a.device is None and a.device_map is None:
        a.device = "cuda"
    if a.max_memory is not None:
        try:
            mm = json.loads(a.max_memory)
        except ValueError as e:
            p.error(f"--max-memory: not JSON: {e}")
        if not isinstance(mm, dict):
            p.error("--max-memory: must be a JSON object of device -> bytes")
        # accelerate wants integer GPU indices as keys, "cpu"/"disk" as strings.
        a.max_memory = {(int(k) if str(k).isdigit() else k): int(v) for k, v in mm.items()}
    if a.prompt_tokens < 1 or a.gen_tokens < 1:
        p.error("--prompt-tokens and --gen-tokens must be >= 1")
    return a


def has_weights(model_dir):
    try:
        names = os.listdir(model_dir)
    except OSError as e:
        raise SystemExit(f"spillway_transformers: cannot read model directory {model_dir}: {e}")
    return any(n.endswith((".safetensors", ".bin", ".pt")) for n in names)


def set_attention(torch, mode):
    """Which SDPA backends may run. `no-cudnn` keeps PyTorch's choice among the others: on H100/H200
    with cuDNN > 9.15 torch puts cuDNN first, and its graph build per new KV length costs ~1.2 ms of
    host time per call."""
    if mode == "default" or not torch.cuda.is_available():
        return
    b = torch.backends.cuda
    b.enable_cudnn_sdp(mode == "cudnn")
    if mode in ("flash", "efficient", "math"):
        b.enable_flash_sdp(mode == "flash")
        b.enable_mem_efficient_sdp(mode == "efficient")
        b.enable_math_sdp(mode == "math")


class Decoder:
    """Prefill with the model's own forward (DynamicCache: the same logits as plain transformers
    code), then greedy decode steps on a static KV cache filled from it, replayed as one CUDA graph per
    step where capture works: the host then issues one launch per token instead of ~1000 kernels, and
    its time no longer adds to the GPU's (the weights in host memory are read over PCIe meanwhile)."""

    def __init__(self, torch, model, max_len, mode):
        self.torch, self.model, self.max_len, self.mode = torch, model, max_len, mode
        self.fallback = None
        self.graph = None

    def _static_cache(self):
        from transformers import StaticCache
        cfg = self.model.config
        dev = next(self.model.parameters()).device
        dt = next(self.model.parameters()).dtype
        errors = []
        for kw in (dict(config=cfg, max_cache_len=self.max_len),
                   dict(config=cfg, max_batch_size=1, max_cache_len=self.max_len, device=dev, dtype=dt)):
            try:
                return StaticCache(**kw)
            except TypeError as e:
                errors.append(str(e))
        raise RuntimeError("StaticCache: no known constructor signature: " + "; ".join(errors))

    def _fill(self, dyn, n):
        """Copy the prefill's DynamicCache into the static cache (one object for the whole run: a
        captured graph reads and writes its tensors)."""
        torch = self.torch
        cache = getattr(self, "static", None)
        if cache is None:
            cache = self.static = self._static_cache()
        else:
            cache.reset()
        pos = torch.arange(n, device=self.dev)
        layers = getattr(dyn, "layers", None)
        count = len(layers) if layers is not None else len(dyn.key_cache)
        for i in range(count):
            k, v = (layers[i].keys, layers[i].values) if layers is not None else (dyn.key_cache[i], dyn.value_cache[i])
            cache.update(k, v, i, {"cache_position": pos})
        return cache

    def prefill(self, ids):
        self.dev = ids.device
        out = self.model(input_ids=ids, use_cache=True)
        if self.mode == "dynamic":
            self.cache = out.past_key_values
        else:
            try:
                self.cache = self._fill(out.past_key_values, ids.shape[1])
            except Exception as e:  # older/newer cache API: decode on the DynamicCache instead
                self.fallback = f"static cache: {type(e).__name__}: {e}"
                self.mode, self.cache = "dynamic", out.past_key_values
        return out.logits

    def _forward(self, tok, pos):
        return self.model(input_ids=tok, past_key_values=self.cache, use_cache=True, cache_position=pos,
                          position_ids=pos.view(1, -1)).logits

    def step(self, tok, position):
        torch = self.torch
        if self.mode == "dynamic":
            out = self.model(input_ids=tok, past_key_values=self.cache, use_cache=True)
            self.cache = out.past_key_values
            return out.logits
        if self.mode == "static":
            return self._forward(tok, torch.tensor([position], device=self.dev))
        if self.graph is None:
            try:
                self._capture(tok, position)
            except Exception as e:
                self.fallback = f"CUDA graph: {type(e).__name__}: {e}"
                self.mode = "static"
                torch.cuda.synchronize()
                return self.step(tok, position)
        self.tok_buf.copy_(tok)
        self.pos_buf.fill_(position)
        self.graph.replay()
        return self.out_buf

    def _capture(self, tok, position):
        torch = self.torch
        self.tok_buf = tok.clone()
        self.pos_buf = torch.tensor([position], device=self.dev)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):  # same token, same position: rewrites the same cache row
                self._forward(self.tok_buf, self.pos_buf)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            self.out_buf = self._forward(self.tok_buf, self.pos_buf)
        self.graph = g

    def run(self, ids, n):
        """An untimed round: prefill and n decode steps (first use of shapes, graph capture)."""
        logits = self.prefill(ids)
        nxt = logits[:, -1:].argmax(-1)
        for i in range(n):
            nxt = self.step(nxt, ids.shape[1] + i)[:, -1:].argmax(-1)


def main(argv):
    a = parse_args(argv)
    # A directory with only config.json (a synthetic model's shape) is built with random weights.
    random_init = a.random_init or (os.path.isdir(a.model) and not has_weights(a.model))
    if a.print_args:
        out = dict(vars(a))
        out["random_init"] = bool(random_init)
        if out["max_memory"] is not None:
            out["max_memory"] = {str(k): v for k, v in out["max_memory"].items()}
        print(json.dumps(out, sort_keys=True))
        return 0

    import torch  # imported late so --print-args works without torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dtype = "auto" if a.dtype == "auto" else getattr(torch, a.dtype)
    t_load = time.perf_counter()
    if random_init:
        config = AutoConfig.from_pretrained(a.model)
        model = AutoModelForCausalLM.from_config(config, torch_dtype=(torch.bfloat16 if dtype == "auto" else dtype))
        if a.device_map:
            from accelerate import dispatch_model, infer_auto_device_map
            dm = infer_auto_device_map(model, max_memory=a.max_memory)
            model = dispatch_model(model, device_map=dm)
        else:
            model = model.to(a.device)
    else:
        kwargs = {"dtype": dtype}
        if a.device_map:
            kwargs["device_map"] = a.device_map
            if a.max_memory:
                kwargs["max_memory"] = a.max_memory
        model = AutoModelForCausalLM.from_pretrained(a.model, **kwargs)
        if not a.device_map:
            model = model.to(a.device)
    model.eval()
    load_s = time.perf_counter() - t_load
    print("LOADED", file=sys.stderr, flush=True)  # weights placed: a benchmark may read the shim's record now

    first = next(model.parameters()).device
    if a.prompt is not None:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(a.model)
        ids = tok(a.prompt, return_tensors="pt").input_ids
    else:
        vocab = model.config.vocab_size
        ids = torch.randint(0, vocab, (1, a.prompt_tokens), generator=torch.Generator().manual_seed(99))
    ids = ids.to(first)
    set_attention(torch, a.attention)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    runner = Decoder(torch, model, ids.shape[1] + a.gen_tokens + 8, a.decode if first.type == "cuda" else "dynamic")

    with torch.inference_mode():
        for _ in range(max(0, a.warmup)):
            runner.run(ids, 2)
        sync()
        t0 = time.perf_counter()
        logits = runner.prefill(ids)
        sync()
        prefill_s = time.perf_counter() - t0
        nxt = logits[:, -1:].argmax(-1)
        tokens = []
        t1 = time.perf_counter()
        for i in range(a.gen_tokens):
            step_logits = runner.step(nxt, ids.shape[1] + i)
            nxt = step_logits[:, -1:].argmax(-1)
            tokens.append(nxt)
        sync()
        decode_s = time.perf_counter() - t1
    tokens = [int(t.item()) for t in tokens]
    if a.save_logits:
        torch.save({"logits": logits[0, -64:].float().cpu(), "tokens": tokens}, a.save_logits)

    result = {
        "runtime": "transformers",
        "model": a.model,
        "randomInit": bool(random_init),
        "loadSeconds": round(load_s, 3),
        "promptTokens": int(ids.shape[1]),
        "promptTps": round(ids.shape[1] / prefill_s, 3),
        "genTokens": a.gen_tokens,
        "genTps": round(a.gen_tokens / decode_s, 3),
        "decode": runner.mode,
        "attention": a.attention,
        "tokens": tokens,
    }
    if runner.fallback:
        result["decodeFallback"] = runner.fallback
    if torch.cuda.is_available():
        result["maxCudaAllocatedBytes"] = int(torch.cuda.max_memory_allocated())
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
