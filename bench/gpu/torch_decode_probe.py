"""Why does PyTorch decode slow down after two tokens? A diagnostic beside torch_bench.py.

The harness's decode traces (per token: wall ms, CPU ms spent issuing the step, SM clock) show the
first two tokens after a prefill at ~20 ms of CPU each, later ones at ~55-85 ms, with the SM clock
steady: the time goes to the host side of the forward pass. This script measures, all in VRAM
(no ballast, no shim), the CPU time per decode token with transformers' DynamicCache and with a
StaticCache, and the top host-side operators (torch.profiler) of one early and one late token.

  python3 bench/gpu/torch_decode_probe.py [--shape llama-8b] [--prompt 512] [--gen 24]

Prints one `PROBE {json}` line.

Found on the H200 (torch 2.11, transformers 5.17): with DynamicCache, aten::_cudnn_attention_forward
took 1.24 ms of host time per call at step 22 (38.7 of 61.4 ms) but a fraction of that at step 1;
with StaticCache (one shape) every step took ~29 ms. torch_bench.py therefore disables the cuDNN
SDPA backend for every method.
"""

import argparse
import gc
import json
import time

import torch
from torch_models import SHAPES, build_model, llama_config  # bench/gpu, the script's folder

p = argparse.ArgumentParser()
p.add_argument("--shape", default="llama-8b", choices=list(SHAPES))
p.add_argument("--prompt", type=int, default=512)
p.add_argument("--gen", type=int, default=24)
a = p.parse_args()

cuda = torch.device("cuda")
cfg = llama_config(a.shape, torch.bfloat16)
model = build_model(cfg, torch.bfloat16, cuda)
ids = torch.randint(0, cfg.vocab_size, (1, a.prompt), generator=torch.Generator().manual_seed(1)).to(cuda)


def static_cache(max_len):
    from transformers import StaticCache
    for kw in (dict(config=cfg, max_cache_len=max_len), dict(config=cfg, max_batch_size=1, max_cache_len=max_len, device=cuda, dtype=torch.bfloat16)):
        try:
            return StaticCache(**kw)
        except TypeError:
            continue
    raise RuntimeError("StaticCache: no known constructor signature")


def decode(kind, n, profile_steps=()):
    """Prefill then n greedy steps; returns per-step [wall ms, CPU ms] and profiler tables."""
    cache = static_cache(a.prompt + n + 8) if kind == "static" else None
    kw = {"past_key_values": cache} if cache is not None else {}
    pos = torch.arange(a.prompt, device=cuda)
    out = model(input_ids=ids, use_cache=True, cache_position=pos, **kw)
    pkv = out.past_key_values
    nxt = out.logits[0, -1].argmax().view(1, 1)
    torch.cuda.synchronize()
    steps, tables = [], {}
    for i in range(n):
        cp = torch.tensor([a.prompt + i], device=cuda)
        prof = None
        if i in profile_steps:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            prof.__enter__()
        t0, c0 = time.perf_counter(), time.process_time()
        o = model(input_ids=nxt, past_key_values=pkv, use_cache=True, cache_position=cp)
        pkv = o.past_key_values
        nxt = o.logits[0, -1].argmax().view(1, 1)
        c1 = time.process_time()
        torch.cuda.synchronize()
        steps.append([round((time.perf_counter() - t0) * 1e3, 2), round((c1 - c0) * 1e3, 2)])
        if prof is not None:
            prof.__exit__(None, None, None)
            tables[i] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return steps, tables


res = {"torch": torch.__version__}
with torch.inference_mode():
    decode("dynamic", 4)  # warm-up
    res["dynamic"], tables = decode("dynamic", a.gen, profile_steps=(1, a.gen - 2))
    for k, t in tables.items():
        print(f"--- dynamic cache, step {k}: top host operators ---\n{t}", flush=True)
    try:
        decode("static", 4)
        res["static"], _ = decode("static", a.gen)
    except Exception as e:  # report, do not hide: the dynamic figures stand on their own
        res["static_error"] = f"{type(e).__name__}: {e}"
res["gc_counts"] = gc.get_count()
print("PROBE " + json.dumps(res), flush=True)
