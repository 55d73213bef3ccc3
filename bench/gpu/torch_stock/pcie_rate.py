"""Rates the roofline needs, measured with PyTorch in this run: a reduction kernel reading a 4 GiB
tensor the shim placed in host memory (zero-copy over PCIe; SPILLWAY_PLACEMENT_RULES puts exactly
that size in host memory) and one in VRAM. Run under the shim, without the ballast.
Prints `RATES {"zero_copy_gbps": .., "vram_gbps": ..}`.
"""
import json
import time

import torch

N = 4 << 30


def rate(x):
    v = x.view(torch.int64)
    v.sum()  # first use
    torch.cuda.synchronize()
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        v.sum()
        torch.cuda.synchronize()
        best = max(best, N / (time.perf_counter() - t) / 1e9)
    return best


host = torch.ones(N, dtype=torch.uint8, device="cuda")  # size=N rule: host memory
vram = torch.ones(N + (2 << 20), dtype=torch.uint8, device="cuda")[:N]
print("RATES " + json.dumps({"zero_copy_gbps": rate(host), "vram_gbps": rate(vram)}), flush=True)
