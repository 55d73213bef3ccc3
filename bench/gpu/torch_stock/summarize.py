"""results.json of run_all.py -> results.md: per case (cases.py) the table, the stock-script ratios
against accelerate, the recipe's fraction of its PCIe roofline, and the placement (what went to host
memory, bytes read per token).

  python3 summarize.py results.json results.md

The roofline of a shim run: per decoded token, the bytes read from host memory over the zero-copy
rate plus the bytes read from VRAM over the VRAM rate, both rates measured in the same run
(pcie_rate.py). Bytes read from host memory: the map's host allocations' bytes read per token (the
embedding: one row) plus anything else the shim put in host memory (read in full), from the shim's
own record after loading.

A step that failed, was skipped or is missing shows as such (its row, its ratio line); a section that
cannot be written says so and the others are still written.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cases import CASES, CHECKPOINTS, MODEL_LINE  # noqa: E402

GB = 1e9


def load_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def main(src, dst):
    R = json.load(open(src))
    S = R.get("steps") or {}
    rates = (S.get("rates") or {}).get("result") or {}
    zc, vr = rates.get("zero_copy_gbps"), rates.get("vram_gbps")
    # Old results.json (before --cases) ran bf16 and fp32.
    sel = [c for c in (R.get("cases") or ["bf16", "fp32"]) if c in CASES]

    def plan_of(name):
        env = (S.get(name) or {}).get("env") or {}
        m = env.get("SPILLWAY_PLACEMENT")
        if not m:
            return None
        return load_json(os.path.join(HERE, "maps", os.path.basename(m).replace(".map", ".json")))

    def read_per_token(case):
        """Bytes a decoded token reads, all weights (the embedding one row), from the case's map file."""
        j = load_json(os.path.join(HERE, "maps", f"{CASES[case]['map']}-last.json"))
        return j and j.get("readPerToken")

    def roofline(case, name):
        rec = S.get(name) or {}
        loaded = rec.get("shim_loaded")
        read = read_per_token(case)
        if not loaded or not zc or not vr or not read:
            return None
        plan = plan_of(name)
        host = loaded["host"]
        if plan:
            host_read = plan["hostReadPerToken"] + max(0, host - plan["hostBytes"])
        else:
            host_read = host  # allocation order: whatever spilled is read in full (layers, head)
        vram_read = max(0, read - host_read)
        t = host_read / (zc * GB) + vram_read / (vr * GB)
        return {"host_bytes": host, "host_read": host_read, "tps": 1 / t}

    def res(name):
        rec = S.get(name) or {}
        r = rec.get("result") if rec.get("status") == "ok" else None
        return r if isinstance(r, dict) else None

    def status(name):
        rec = S.get(name)
        if rec is None:
            return "not run"
        st = rec.get("status") or "failed"
        if st == "ok" and not res(name):
            st = "ok, but no result in its output"
        if rec.get("killed_at_limit"):
            st += f" (killed at its {rec.get('limit_s', '?')} s limit)"
        elif rec.get("why"):
            st += f" ({rec['why']})"
        return st

    def pre_dec(r):
        return r.get("prefill_tps", r.get("promptTps")), r.get("decode_tps", r.get("genTps"))

    def f(x, d=2):
        return "-" if x is None else f"{x:.{d}f}"

    def check(name):
        c = (S.get(name) or {}).get("check")
        if not c:
            return "-"
        return ("exact" if c["exact"] else f"max|Δ| {c['max_abs_diff']:.2e}, argmax {c['argmax_agree_pct']:.1f}%") + \
            (", tokens identical" if c["tokens_identical"] else ", tokens differ")

    def ratio_line(what, a_name, b_name, extra=""):
        """'- what: decode Nx, prefill Mx' of step a over step b, or why not."""
        ra, rb = res(a_name), res(b_name)
        if ra and rb:
            (pa, da), (pb, db) = pre_dec(ra), pre_dec(rb)
            if pa and da and pb and db:
                return f"- {what}: decode {da / db:.2f}x, prefill {pa / pb:.2f}x{extra}"
        why = "; ".join(f"{n}: {status(n)}" for n, r in ((a_name, ra), (b_name, rb)) if not r)
        return f"- {what}: failed ({why or 'no rates in the results'})"

    label = {
        "all-vram": "stock script, all in VRAM (no ballast): the ceiling",
        "stock-spillway": "stock script under `spillway run --` (shim + access-aware map + TORCH_CUDNN_SDPA_DEPRIORITIZED=1)",
        "stock-accelerate": "stock script with accelerate device_map=\"auto\" offload",
        "recipe": "spillway transformers recipe (shim + map, static cache + CUDA graph)",
        "stock-bare-shim": "stock script under the bare shim (no map, no env: before this issue)",
        "stock-spillway-first": "stock script, spillway env, map spilling the first layers instead",
    }
    m = R.get("machine") or {}
    lines = [f"# PyTorch stock-script benchmark (issue 17), {(R.get('started') or '?')[:10]}", "",
             f"- GPU: {m.get('gpu', '?')}; torch {m.get('torch', '?')}, transformers {m.get('transformers', '?')}, cuDNN {m.get('cudnn', '?')}",
             f"- `TORCH_CUDNN_SDPA_DEPRIORITIZED` present in this torch's libtorch_cuda: {m.get('deprioritized_env_in_lib')}",
             f"- cases: {', '.join(sel)}; ballast: {R.get('ballast')}; run took {R.get('seconds')} s of a {R.get('budget_s', '?')} s "
             f"budget (started {R.get('started')})",
             f"- rates measured in this run with PyTorch under the shim: zero-copy {f(zc, 1)} GB/s, VRAM {f(vr, 0)} GB/s"]
    for shape in dict.fromkeys(CASES[c]["shape"] for c in sel):
        ck = (R.get("checkpoints") or {}).get(shape) or {}
        where = f"; checkpoint in {ck['dir']}" if ck.get("dir") else ""
        lines.append(f"- model: {MODEL_LINE.get(shape, shape)}; deterministic random weights saved once as a Hugging Face "
                     f"checkpoint{where}")
    lines += ["- prefill: pp512 (one forward of 512 tokens); decode: generate(N+1) - generate(1) over N tokens (stock), "
              "a timed greedy loop (recipe)", ""]

    for case in sel:
        cs = CASES[case]
        sec = [f"## {cs['title']}", ""]
        try:
            sec += ["| method | prefill t/s | decode t/s | roofline t/s | % of roofline | host bytes (shim) | host bytes read/token | logits vs all-VRAM | load s |",
                    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
            for key, text in label.items():
                name = f"{case}-{key}"
                if name not in S:
                    continue
                r = res(name)
                if r is None:
                    sec.append(f"| {text} | {status(name)} | | | | | | | |")
                    continue
                rf = roofline(case, name)
                pre, dec = pre_dec(r)
                extra = f" ({r.get('decode')})" if r.get("decode") else ""
                pct = dec / rf["tps"] * 100 if rf and dec else None
                sec.append(f"| {text}{extra} | {f(pre, 0)} | {f(dec)} | {f(rf and rf['tps'])} | "
                           f"{f(pct, 0)} | {f(rf and rf['host_bytes'] / GB)} GB | {f(rf and rf['host_read'] / GB)} GB | "
                           f"{check(name)} | {f(r.get('load_s', r.get('loadSeconds')), 1)} |")
            sec.append("")
            sec.append(ratio_line("stock script, spillway vs accelerate", f"{case}-stock-spillway", f"{case}-stock-accelerate",
                                  " (targets 8x, 3x)"))
            if f"{case}-stock-bare-shim" in S:
                sec.append(ratio_line("stock script, bare shim vs accelerate", f"{case}-stock-bare-shim",
                                      f"{case}-stock-accelerate"))
            rc = res(f"{case}-recipe")
            rr = roofline(case, f"{case}-recipe")
            if rc and rr and rc.get("genTps"):
                sec.append(f"- recipe: {rc['genTps']:.2f} t/s = {rc['genTps'] / rr['tps'] * 100:.0f}% of its roofline "
                           f"({rr['tps']:.2f} t/s; target 90%); decode mode {rc.get('decode')}"
                           + (f"; fallback: {rc['decodeFallback']}" if rc.get("decodeFallback") else ""))
            elif rc:
                sec.append("- recipe: roofline unknown (no rates or no shim record)")
            else:
                sec.append(f"- recipe: {status(case + '-recipe')}")
            sec.append(ratio_line("recipe vs accelerate", f"{case}-recipe", f"{case}-stock-accelerate"))
            plan = plan_of(f"{case}-stock-spillway") or load_json(os.path.join(HERE, "maps", f"{cs['map']}-last.json"))
            if plan:
                ht = plan["hostTensors"]
                per = {}
                for t in ht:
                    if t.startswith("model.layers."):
                        per[int(t.split(".")[2])] = per.get(int(t.split(".")[2]), 0) + 1
                layers = sorted(per)
                full = max(per.values()) if per else 0
                part = [i for i in layers if per[i] < full]
                contiguous = bool(layers) and len(layers) == layers[-1] - layers[0] + 1
                span = f"layers {layers[0]}..{layers[-1]}" if contiguous else f"layers {', '.join(map(str, layers)) or '-'}"
                lines_part = f", layer {', '.join(map(str, part))} in part" if part else ""
                sec.append(f"- placement (map `maps/{cs['map']}-last.map`, {len(ht)} tensors): "
                           f"{', '.join(t for t in ht if not t.startswith('model.layers.')) or 'no other tensor'} + {span} "
                           f"(the big matrices{lines_part}); planned host "
                           f"{plan['hostBytes'] / GB:.2f} GB of which {plan['hostReadPerToken'] / GB:.2f} GB read per token "
                           f"(of {plan['readPerToken'] / GB:.2f} GB read per token in all)")
        except Exception as e:  # one broken section must not cost the others
            sec.append(f"- this section could not be written: {type(e).__name__}: {e}")
        lines += sec + [""]
    if R.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in R["notes"]] + [""]
    lines += ["## Steps", "", "| step | status | seconds |", "| --- | --- | --- |"]
    lines += [f"| {k} | {status(k)} | {v.get('seconds', '-')} |" for k, v in S.items()]
    known = {c["step"] for c in CHECKPOINTS.values()}
    for shape, ck in (R.get("checkpoints") or {}).items():
        st = CHECKPOINTS.get(shape, {}).get("step")
        if st in known and st not in S:
            lines.append(f"| {st} | {'reused' if ck.get('complete') else 'missing'} ({ck.get('dir')}) | - |")
    with open(dst, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
