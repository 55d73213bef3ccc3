"""A stock user script, as a new user writes it: plain transformers, no backend settings, no
spillway imports. The benchmark (run_all.py) runs this same file all in VRAM, under
`spillway run --` (the shim and the environment spillway sets from outside), and with accelerate's
device_map offload (--device-map auto), and compares what it prints.

  python3 stock_script.py --model DIR [--dtype bfloat16] [--device-map auto --gpu-gib 9.5]

The measuring around the user's calls (timers, the logits file) changes nothing they run:
  model = AutoModelForCausalLM.from_pretrained(DIR, dtype=...); model.to("cuda")
  model(ids)                                   # prefill, pp512
  model.generate(ids, max_new_tokens=N, do_sample=False)
Prints `RESULT {json}`.
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--dtype", default="bfloat16")
p.add_argument("--prompt", type=int, default=512)
p.add_argument("--gen", type=int, default=16)
p.add_argument("--device-map", default=None)
p.add_argument("--gpu-gib", type=float, default=0, help="accelerate max_memory for GPU 0")
p.add_argument("--save-logits", default=None, help="write the prefill logits (last 64 positions) and tokens here")
a = p.parse_args()

t0 = time.perf_counter()
dtype = getattr(torch, a.dtype)
if a.device_map:
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, device_map=a.device_map,
                                                 max_memory={0: int(a.gpu_gib * 2**30), "cpu": 200 * 2**30})
else:
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype)
    model.to("cuda")
model.eval()
torch.cuda.synchronize()
load_s = time.perf_counter() - t0
print("LOADED", flush=True)  # the benchmark reads the shim's placement now

torch.manual_seed(0)
ids = torch.randint(0, model.config.vocab_size, (1, a.prompt), generator=torch.Generator().manual_seed(99)).to("cuda")
with torch.inference_mode():
    model.generate(ids, max_new_tokens=2, do_sample=False)  # first use of the shapes (cuBLAS, kernels)
    torch.cuda.synchronize()
    t = time.perf_counter()
    logits = model(ids).logits
    torch.cuda.synchronize()
    prefill_s = time.perf_counter() - t
    t = time.perf_counter()
    one = model.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
    torch.cuda.synchronize()
    t_one = time.perf_counter() - t
    t = time.perf_counter()
    out = model.generate(ids, max_new_tokens=a.gen + 1, min_new_tokens=a.gen + 1, do_sample=False)
    torch.cuda.synchronize()
    t_all = time.perf_counter() - t

tokens = out[0, a.prompt:].tolist()
last = logits[0, -64:].float().cpu()
if a.save_logits:
    torch.save({"logits": last, "tokens": tokens}, a.save_logits)
res = {
    "load_s": load_s, "prefill_tps": a.prompt / prefill_s,
    # generate(N+1) minus generate(1): N decode steps, the prefill and setup cancel out.
    "decode_tps": a.gen / max(1e-9, t_all - t_one), "gen": a.gen, "prompt": a.prompt,
    "tokens": tokens, "max_memory_allocated": torch.cuda.max_memory_allocated(),
    "cudnn_sdp_enabled": torch.backends.cuda.cudnn_sdp_enabled(), "torch": torch.__version__,
    "params": [[n, prm.numel() * prm.element_size(), str(prm.device)] for n, prm in model.named_parameters()][:12],
}
print("RESULT " + json.dumps(res), flush=True)
