"""Write a Hugging Face checkpoint (config.json + safetensors) of a real model shape with the
deterministic random weights of bench/gpu/torch_models.py, so the stock script loads it the way
users load models (`from_pretrained`). Building an 8B model with transformers' own random init on
the CPU in every benchmarked process would cost more device time than the measurements.

  python3 make_checkpoint.py --shape llama-8b --out /dev/shm/llama-8b
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_models import SHAPES, build_model, llama_config  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--shape", default="llama-8b", choices=list(SHAPES))
p.add_argument("--out", required=True)
a = p.parse_args()
t = time.perf_counter()
cfg = llama_config(a.shape, torch.bfloat16)
model = build_model(cfg, torch.bfloat16, torch.device("cpu"))
model.config.torch_dtype = torch.bfloat16
model.save_pretrained(a.out, safe_serialization=True, max_shard_size="50GB")
print(f"checkpoint {a.out}: {sum(p.numel() for p in model.parameters())} params in {time.perf_counter() - t:.1f}s", flush=True)
