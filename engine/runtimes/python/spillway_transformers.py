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
        kwargs = {"torch_dtype": dtype}
        if a.device_map:
            kwargs["device_map"] = a.device_map
            if a.max_memory:
                kwargs["max_memory"] = a.max_memory
        model = AutoModelForCausalLM.from_pretrained(a.model, **kwargs)
        if not a.device_map:
            model = model.to(a.device)
    model.eval()
    load_s = time.perf_counter() - t_load

    first = next(model.parameters()).device
    if a.prompt is not None:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(a.model)
        ids = tok(a.prompt, return_tensors="pt").input_ids
    else:
        vocab = model.config.vocab_size
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (1, a.prompt_tokens), generator=g)
    ids = ids.to(first)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        out = model(ids, use_cache=True)
        sync()
        prefill_s = time.perf_counter() - t0
        past = out.past_key_values
        nxt = out.logits[:, -1:].argmax(-1)
        t1 = time.perf_counter()
        for _ in range(a.gen_tokens):
            out = model(nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1:].argmax(-1)
        sync()
        decode_s = time.perf_counter() - t1

    result = {
        "runtime": "transformers",
        "model": a.model,
        "randomInit": bool(random_init),
        "loadSeconds": round(load_s, 3),
        "promptTokens": int(ids.shape[1]),
        "promptTps": round(ids.shape[1] / prefill_s, 3),
        "genTokens": a.gen_tokens,
        "genTps": round(a.gen_tokens / decode_s, 3),
    }
    if torch.cuda.is_available():
        result["maxCudaAllocatedBytes"] = int(torch.cuda.max_memory_allocated())
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
