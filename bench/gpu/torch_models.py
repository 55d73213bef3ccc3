"""Random-init transformers models of real shapes for the PyTorch benchmarks (torch_bench.py,
torch_decode_probe.py): no download, deterministic weights whatever the device."""

import zlib

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    # The dimensions of engine/model/shapes.ts.
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0, rms_norm_eps=1e-5),
    # The Qwen2.5-14B layer shape as a Llama (bias-free attention: Qwen2 adds q/k/v biases, 344 K of its
    # 14.77 B parameters, left out so the stock LlamaForCausalLM and the shim's maps take it as is): 48 layers,
    # hidden 5120, 40 heads / 8 KV heads (head dim 128), MLP 13824, vocab 152064, untied head.
    # ~14.77 B params, ~29.5 GB at bf16: the 14B-class bf16 case of issue 17.
    "llama-14b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=48, num_attention_heads=40,
                      num_key_value_heads=8, vocab_size=152064, rope_theta=1000000.0, rms_norm_eps=1e-5),
    "tiny-llama": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=512, rope_theta=10000.0, rms_norm_eps=1e-5),
}


def llama_config(shape, dtype, max_positions=4096):
    """The LlamaConfig of a known shape (untied embeddings, as the real model)."""
    cfg = LlamaConfig(**SHAPES[shape], max_position_embeddings=max_positions, tie_word_embeddings=False)
    cfg.torch_dtype = dtype
    return cfg


def build_model(cfg, dtype, device):
    """The model on `device` with weights from a fixed random pool (each tensor at an offset given
    by its name): the same values on any device, so logits can be compared across placements."""
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model = model.to(dtype=dtype).to_empty(device=device)
    # Non-persistent buffers (rotary inverse frequencies) are not weights: rebuild them.
    rot = model.model.rotary_emb
    model.model.rotary_emb = type(rot)(config=cfg, device=device)
    g = torch.Generator(device="cpu").manual_seed(1234)
    pool = (torch.randn(1 << 24, generator=g) * 0.02).to(dtype).to(device)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            flat = prm.view(-1)
            if "norm" in name:
                flat.fill_(1.0)
                continue
            n = flat.numel()
            off = zlib.crc32(name.encode()) % pool.numel()
            pos = 0
            while pos < n:
                k = min(n - pos, pool.numel() - off)
                flat[pos:pos + k].copy_(pool[off:off + k])
                pos += k
                off = 0
    model.eval()
    return model
