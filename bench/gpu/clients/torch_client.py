"""PyTorch (its caching allocator; PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True for the VMM one).
Usage: python3 torch_client.py GIB [triton]"""

import sys
import time

START = time.perf_counter()
import torch  # noqa: E402

from _common import N, P, chunks_from_argv, report, timed  # noqa: E402

k = chunks_from_argv()
use_triton = len(sys.argv) > 2 and sys.argv[2] == "triton"
torch.cuda.init()
torch.zeros(1, device="cuda")  # context up before timing
if use_triton:
    import triton
    import triton.language as tl

    @triton.jit
    def fill_kernel(x_ptr, i, n, P: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        v = ((offs % P) * 37 + 11 * i) % P
        tl.store(x_ptr + offs, v.to(tl.int32), mask=mask)

    @triton.jit
    def comb_kernel(x_ptr, y_ptr, n, P: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        a = tl.load(x_ptr + offs, mask=mask)
        b = tl.load(y_ptr + offs, mask=mask)
        tl.store(x_ptr + offs, (a + b) % P, mask=mask)

    BLOCK = 4096
    grid = (triton.cdiv(N, BLOCK),)


def compute(k):
    """The checksum over k chunks (see _common.py)."""
    xs = []
    if use_triton:
        for i in range(k):
            x = torch.empty(N, dtype=torch.int32, device="cuda")
            fill_kernel[grid](x, i, N, P=P, BLOCK=BLOCK)
            xs.append(x)
        for i in range(1, k):
            comb_kernel[grid](xs[i], xs[i - 1], N, P=P, BLOCK=BLOCK)
    else:
        base = torch.arange(N, dtype=torch.int32, device="cuda").remainder_(P).mul_(37)
        for i in range(k):
            x = torch.empty(N, dtype=torch.int32, device="cuda")
            torch.add(base, 11 * i, out=x).remainder_(P)
            xs.append(x)
        del base
        for i in range(1, k):
            xs[i].add_(xs[i - 1]).remainder_(P)
    checksum = sum(int(x.sum(dtype=torch.int64).item()) for x in xs)
    torch.cuda.synchronize()
    return checksum


checksum, best_s, times = timed(compute, k)
report("triton" if use_triton else "torch", checksum, best_s, START,
       {"torch_reserved": torch.cuda.memory_reserved(), "mem_get_info": list(torch.cuda.mem_get_info())}, times)
