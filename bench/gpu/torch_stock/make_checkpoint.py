"""Write a Hugging Face checkpoint (config.json + safetensors) of a real model shape with the
deterministic random weights of bench/gpu/torch_models.py, so the stock script loads it the way
users load models (`from_pretrained`). Building an 8B model with transformers' own random init on
the CPU in every benchmarked process would cost more device time than the measurements.

  python3 make_checkpoint.py --shape llama-8b --out /dev/shm/llama-8b

The model is built in bf16 directly (meta device, then empty bf16 storage on the CPU, filled from a
small bf16 pool): no fp32 copy of the weights at any point, so llama-14b (29.5 GB) needs ~30 GB for
the model plus one shard's serialized bytes (safetensors copies a shard into one buffer before
writing it; hence shards of a few GB, not one 30 GB file). Written into OUT.partial and renamed
to OUT when complete: OUT exists only as a whole checkpoint. Prints `RESULT {json}` at the end.
"""
import argparse
import json
import os
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_models import SHAPES, build_model, llama_config  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--shape", default="llama-8b", choices=list(SHAPES))
p.add_argument("--out", required=True)
p.add_argument("--shard", default="8GB", help="max_shard_size of save_pretrained")
a = p.parse_args()
t = time.perf_counter()
out = os.path.abspath(a.out)
tmp = out + ".partial"
shutil.rmtree(tmp, ignore_errors=True)
cfg = llama_config(a.shape, torch.bfloat16)
model = build_model(cfg, torch.bfloat16, torch.device("cpu"))
model.config.torch_dtype = torch.bfloat16
params = sum(prm.numel() for prm in model.parameters())
nbytes = sum(prm.numel() * prm.element_size() for prm in model.parameters())
t_build = time.perf_counter() - t
print(f"built {a.shape}: {params} params, {nbytes / 1e9:.2f} GB bf16 in {t_build:.1f}s", flush=True)
model.save_pretrained(tmp, safe_serialization=True, max_shard_size=a.shard)
del model
names = sorted(os.listdir(tmp))
if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
    sys.exit(f"make_checkpoint: {tmp} lacks config.json or safetensors after save_pretrained: {names}")
if os.path.isdir(out):
    shutil.rmtree(out)  # an incomplete directory of an older run
os.rename(tmp, out)
written = sum(os.path.getsize(os.path.join(out, n)) for n in names)
sec = time.perf_counter() - t
print(f"checkpoint {out}: {params} params in {sec:.1f}s", flush=True)
print("RESULT " + json.dumps({"shape": a.shape, "out": out, "params": params, "weight_bytes": nbytes,
                              "bytes_written": written, "files": names, "build_s": round(t_build, 1),
                              "seconds": round(sec, 1)}), flush=True)
