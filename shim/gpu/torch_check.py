"""PyTorch through the spillway shim: the memory torch sees, and a tensor larger than the VRAM
budget computed on by kernels (values checked). Run under LD_PRELOAD with SPILLWAY_VRAM_BUDGET set
and SPILLWAY_SHIM_LIB naming the library. Prints one JSON object."""
import ctypes
import json
import os
import struct
import time

import torch

shim = ctypes.CDLL(os.environ["SPILLWAY_SHIM_LIB"])  # the preloaded instance
buf = ctypes.create_string_buffer(296)


def stats():
    shim.spillway_shim_stats(buf, ctypes.c_size_t(296))
    tiers = [struct.unpack_from("<4Q", buf, 96 + 32 * i) for i in range(4)]
    allocs, frees, _, spills, splits, failures = struct.unpack_from("<6Q", buf, 224)
    return {"vramBytes": tiers[0][0], "hostVmmBytes": tiers[1][0], "hostMappedBytes": tiers[2][0],
            "allocs": allocs, "frees": frees, "spills": spills, "splits": splits, "failures": failures}


out = {"test": "torch", "torch": torch.__version__, "cudaRuntime": torch.version.cuda,
       "allocConf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")}
free, total = torch.cuda.mem_get_info()
out["memGetInfo"] = {"free": free, "total": total}
out["deviceTotal"] = torch.cuda.get_device_properties(0).total_memory
n = int(os.environ.get("TORCH_ELEMENTS", str(1 << 30)))  # int64: 8 GiB
t0 = time.time()
x = torch.arange(n, dtype=torch.int64, device="cuda")  # one allocation over the budget, written by a kernel
torch.cuda.synchronize()
out["allocAndFillSeconds"] = round(time.time() - t0, 3)
out["afterAlloc"] = stats()
t0 = time.time()
s = int(x.sum().item())  # a kernel reads every element, most of them from host memory
out["sumSeconds"] = round(time.time() - t0, 3)
out["sumCorrect"] = s == n * (n - 1) // 2
probe = torch.randint(0, n, (4096,), device="cpu")
out["samplesCorrect"] = bool(torch.equal(x[probe.cuda()].cpu(), probe))
a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
y = (x[: 4096 * 4096].view(4096, 4096).to(torch.bfloat16) @ a).float().abs().sum().item()
out["matmulFinite"] = y == y and y != float("inf")
del x, a, probe
torch.cuda.synchronize()
torch.cuda.empty_cache()
out["afterFree"] = stats()
host = lambda st: st["hostVmmBytes"] + st["hostMappedBytes"]
# The big tensor was the only allocation when afterAlloc was taken: its host part must come back.
# Allocations still live at the end (cuBLAS workspaces, which torch keeps) may hold host memory too.
out["passed"] = bool(out["sumCorrect"] and out["samplesCorrect"] and out["matmulFinite"]
                     and host(out["afterAlloc"]) > 0 and host(out["afterFree"]) < host(out["afterAlloc"]))
print(json.dumps(out))
