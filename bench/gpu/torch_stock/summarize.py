"""results.json of run_all.py -> results.md: the table, the stock-script ratios against accelerate,
the recipe's fraction of its PCIe roofline, and the placement (what went to host memory, bytes read
per token).

  python3 summarize.py results.json results.md

The roofline of a shim run: per decoded token, the bytes read from host memory over the zero-copy
rate plus the bytes read from VRAM over the VRAM rate, both rates measured in the same run
(pcie_rate.py). Bytes read from host memory: the map's host allocations' bytes read per token (the
embedding: one row) plus anything else the shim put in host memory (read in full), from the shim's
own record after loading.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
src, dst = sys.argv[1], sys.argv[2]
R = json.load(open(src))
S = R["steps"]
GB = 1e9
rates = (S.get("rates") or {}).get("result") or {}
zc, vr = rates.get("zero_copy_gbps"), rates.get("vram_gbps")


def plan_of(name):
    env = (S.get(name) or {}).get("env") or {}
    m = env.get("SPILLWAY_PLACEMENT")
    if not m:
        return None
    j = os.path.join(HERE, "maps", os.path.basename(m).replace(".map", ".json"))
    return json.load(open(j)) if os.path.exists(j) else None


# Bytes a decoded token reads, all weights (the embedding one row), from the map files.
READ = {c: json.load(open(os.path.join(HERE, "maps", f"llama8b-{c}-last.json")))["readPerToken"] for c in ("bf16", "fp32")}
EMB = {"bf16": 128256 * 4096 * 2, "fp32": 128256 * 4096 * 4}


def roofline(name):
    rec = S.get(name) or {}
    loaded = rec.get("shim_loaded")
    if not loaded or not zc or not vr:
        return None
    case = name.split("-")[0]
    plan = plan_of(name)
    host = loaded["host"]
    if plan:
        host_read = plan["hostReadPerToken"] + max(0, host - plan["hostBytes"])
    else:
        host_read = host  # allocation order: whatever spilled is read in full (layers, head)
    vram_read = READ[case] - host_read
    t = host_read / (zc * GB) + vram_read / (vr * GB)
    return {"host_bytes": host, "host_read": host_read, "tps": 1 / t}


def res(name):
    rec = S.get(name) or {}
    return rec.get("result") if rec.get("status") == "ok" else None


def f(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"


def check(name):
    c = (S.get(name) or {}).get("check")
    if not c:
        return "-"
    return ("exact" if c["exact"] else f"max|Δ| {c['max_abs_diff']:.2e}, argmax {c['argmax_agree_pct']:.1f}%") + \
        (", tokens identical" if c["tokens_identical"] else ", tokens differ")


LABEL = {
    "all-vram": "stock script, all in VRAM (no ballast): the ceiling",
    "stock-spillway": "stock script under `spillway run --` (shim + access-aware map + TORCH_CUDNN_SDPA_DEPRIORITIZED=1)",
    "stock-accelerate": "stock script with accelerate device_map=\"auto\" offload",
    "recipe": "spillway transformers recipe (shim + map, static cache + CUDA graph)",
    "stock-bare-shim": "stock script under the bare shim (no map, no env: before this issue)",
    "stock-spillway-first": "stock script, spillway env, map spilling the first layers instead",
}
m = R.get("machine", {})
lines = [f"# PyTorch stock-script benchmark (issue 17), {R.get('started', '?')[:10]}", "",
         f"- GPU: {m.get('gpu', '?')}; torch {m.get('torch', '?')}, transformers {m.get('transformers', '?')}, cuDNN {m.get('cudnn', '?')}",
         f"- `TORCH_CUDNN_SDPA_DEPRIORITIZED` present in this torch's libtorch_cuda: {m.get('deprioritized_env_in_lib')}",
         f"- ballast: {R.get('ballast')}; run took {R.get('seconds')} s (started {R.get('started')})",
         f"- rates measured in this run with PyTorch under the shim: zero-copy {f(zc, 1)} GB/s, VRAM {f(vr, 0)} GB/s",
         "- model: Llama-3-8B shape (32 layers, hidden 4096, vocab 128256, untied head), deterministic random weights "
         "saved once as a Hugging Face checkpoint; bf16 (16.06 GB) and the same loaded as fp32 (32.1 GB)",
         "- prefill: pp512 (one forward of 512 tokens); decode: generate(N+1) - generate(1) over N tokens (stock), "
         "a timed greedy loop (recipe)", ""]
for case in ("bf16", "fp32"):
    lines += [f"## Llama-8B shape, {case}", "",
              "| method | prefill t/s | decode t/s | roofline t/s | % of roofline | host bytes (shim) | host bytes read/token | logits vs all-VRAM | load s |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, label in LABEL.items():
        name = f"{case}-{key}"
        if name not in S:
            continue
        r = res(name)
        rf = roofline(name)
        st = S[name].get("status")
        if r is None:
            lines.append(f"| {label} | {st} | | | | | | | |")
            continue
        pre = r.get("prefill_tps", r.get("promptTps"))
        dec = r.get("decode_tps", r.get("genTps"))
        extra = f" ({r.get('decode')})" if r.get("decode") else ""
        lines.append(f"| {label}{extra} | {f(pre, 0)} | {f(dec)} | {f(rf and rf['tps'])} | "
                     f"{f(rf and dec / rf['tps'] * 100, 0)} | {f(rf and rf['host_bytes'] / GB)} GB | {f(rf and rf['host_read'] / GB)} GB | "
                     f"{check(name)} | {f(r.get('load_s', r.get('loadSeconds')), 1)} |")
    lines.append("")
    sp, ac, rc = res(f"{case}-stock-spillway"), res(f"{case}-stock-accelerate"), res(f"{case}-recipe")
    if sp and ac:
        lines.append(f"- stock script, spillway vs accelerate: decode {sp['decode_tps'] / ac['decode_tps']:.2f}x, "
                     f"prefill {sp['prefill_tps'] / ac['prefill_tps']:.2f}x (targets 8x, 3x)")
    bare = res(f"{case}-stock-bare-shim")
    if bare and ac:
        lines.append(f"- stock script, bare shim vs accelerate: decode {bare['decode_tps'] / ac['decode_tps']:.2f}x, "
                     f"prefill {bare['prefill_tps'] / ac['prefill_tps']:.2f}x")
    rr = roofline(f"{case}-recipe")
    if rc and rr:
        lines.append(f"- recipe: {rc['genTps']:.2f} t/s = {rc['genTps'] / rr['tps'] * 100:.0f}% of its roofline "
                     f"({rr['tps']:.2f} t/s; target 90%); decode mode {rc.get('decode')}"
                     + (f"; fallback: {rc['decodeFallback']}" if rc.get("decodeFallback") else ""))
    if rc and ac:
        lines.append(f"- recipe vs accelerate: decode {rc['genTps'] / ac['decode_tps']:.2f}x, prefill {rc['promptTps'] / ac['prefill_tps']:.2f}x")
    plan = plan_of(f"{case}-stock-spillway")
    if plan:
        ht = plan["hostTensors"]
        layers = sorted({int(t.split(".")[2]) for t in ht if t.startswith("model.layers.")})
        lines.append(f"- placement (map `maps/llama8b-{case}-last.map`, {len(ht)} tensors): "
                     f"{', '.join(t for t in ht if not t.startswith('model.layers.'))} + layers {layers[0] if layers else '-'}..{layers[-1] if layers else '-'} "
                     f"({'all' if layers and len(layers) == layers[-1] - layers[0] + 1 else 'some'} big matrices); planned host "
                     f"{plan['hostBytes'] / GB:.2f} GB of which {plan['hostReadPerToken'] / GB:.2f} GB read per token "
                     f"(of {plan['readPerToken'] / GB:.2f} GB read per token in all)")
    lines.append("")
if R.get("notes"):
    lines += ["## Notes", ""] + [f"- {n}" for n in R["notes"]] + [""]
lines += ["## Steps", "", "| step | status | seconds |", "| --- | --- | --- |"]
lines += [f"| {k} | {v.get('status')} | {v.get('seconds', '-')} |" for k, v in S.items()]
open(dst, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
