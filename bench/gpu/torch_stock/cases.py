"""The cases of the stock-script benchmark, shared by run_all.py and summarize.py (no torch here).

A case is one model shape at one dtype. Its steps are named `<case>-<method>` (bf16-stock-spillway,
bf16-14b-recipe, ...); `case_of` maps a step name back to its case.

Per case: the checkpoint shape (bench/gpu/torch_models.py SHAPES) and the dtype it is loaded as, the
maps' prefix (maps/<map>-last.map, maps/<map>-first.map: make_maps.ts), tokens generated (stock under
the shim, stock under accelerate; the recipe generates 2x `gen`), the extras run last when time is
left, and the time limits: `limit` kills a step, `need` is the least time left for which it starts
(else it is recorded as skipped). The 8B limits are from bench/results/2026-12-06-torch (steps took
25-57 s); the 14B ones are estimates scaled from them (see run_all.py's docstring).
"""

CASES = {
    "bf16": dict(
        shape="llama-8b", dtype="bfloat16", map="llama8b-bf16", gen=16, acc_gen=4,
        title="Llama-8B shape, bf16", extras=("stock-bare-shim", "stock-spillway-first"),
        limit={"all-vram": 90, "stock-spillway": 110, "stock-accelerate": 110, "recipe": 110, "extra": 90},
        need={"all-vram": 35, "stock-spillway": 35, "stock-accelerate": 45, "recipe": 35, "extra": 40}),
    "fp32": dict(
        shape="llama-8b", dtype="float32", map="llama8b-fp32", gen=8, acc_gen=2,
        title="Llama-8B shape, fp32", extras=(),
        limit={"all-vram": 90, "stock-spillway": 120, "stock-accelerate": 120, "recipe": 120, "extra": 110},
        need={"all-vram": 40, "stock-spillway": 65, "stock-accelerate": 70, "recipe": 60, "extra": 65}),
    "bf16-14b": dict(
        shape="llama-14b", dtype="bfloat16", map="llama14b-bf16", gen=8, acc_gen=2,
        title="Llama-14B shape (Qwen2.5-14B layers), bf16", extras=("stock-bare-shim", "stock-spillway-first"),
        limit={"all-vram": 120, "stock-spillway": 150, "stock-accelerate": 150, "recipe": 150, "extra": 120},
        need={"all-vram": 50, "stock-spillway": 55, "stock-accelerate": 65, "recipe": 55, "extra": 55}),
}

# The checkpoints: directory name, bytes on disk (bf16), the free /dev/shm (tmpfs: RAM) above which it
# goes there rather than to the work dir, and the write step's limit / need (8B: 30 s measured).
CHECKPOINTS = {
    "llama-8b": dict(dirname="spillway-llama-8b", step="checkpoint", bytes=16.1e9, shm_min=40e9, limit=120, need=45),
    "llama-14b": dict(dirname="spillway-llama-14b", step="checkpoint-llama-14b", bytes=29.6e9, shm_min=50e9,
                      limit=180, need=70),
}

MODEL_LINE = {
    "llama-8b": "Llama-3-8B shape (32 layers, hidden 4096, MLP 14336, 32/8 heads, vocab 128256, untied head): "
                "bf16 16.06 GB, the same loaded as fp32 32.1 GB",
    "llama-14b": "Llama-14B shape: the Qwen2.5-14B layers as a Llama, bias-free attention (48 layers, hidden 5120, "
                 "MLP 13824, 40/8 heads, vocab 152064, untied head), 14.77 B params, bf16 29.54 GB",
}


def case_of(step):
    """The case a step belongs to (the longest case name that prefixes it), or None."""
    for c in sorted(CASES, key=len, reverse=True):
        if step.startswith(c + "-"):
            return c
    return None


def parse_cases(text):
    """'bf16,fp32' -> ['bf16', 'fp32'] (order kept, duplicates dropped); ValueError on an unknown name."""
    out = []
    for c in (x.strip() for x in text.split(",")):
        if not c:
            continue
        if c not in CASES:
            raise ValueError(f"unknown case {c!r} (known: {', '.join(CASES)})")
        if c not in out:
            out.append(c)
    if not out:
        raise ValueError("no case given")
    return out
