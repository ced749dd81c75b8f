#!/usr/bin/env python3
"""Writes a random-weight Mamba / Mamba2 model with the shape of a published checkpoint, in the Hugging Face
layout (config.json + model.safetensors, HF tensor names, tied embeddings), for speed and memory work where the
real weights cannot be downloaded (design.md "Test data"). Needs only torch (no transformers, no safetensors,
no numpy: the safetensors file is written by hand: 8-byte little-endian header length, JSON header, raw data).

Shapes (kernels.md §1a): mamba-130m 24x768, mamba-370m 48x1024, mamba-790m 48x1536, mamba-1.4b 48x2048,
mamba-2.8b 64x2560; mamba2-130m ... mamba2-2.7b with the same sizes (headdim 64, d_state 128, 1 group).
Initialisation as src/model/random_model.cpp (mamba_ssm's): projections N(0, 0.02) (out_proj / sqrt(2 n_layer)),
A_log = log(1..N) (Mamba1) or log U[1, 16] (Mamba2), softplus(dt_bias) log-uniform in [1e-3, 1e-1], D = 1.

Usage: make_random_model.py --shape mamba-130m --out DIR [--seed 0] [--dtype bf16|fp32]
"""
import argparse
import ctypes
import json
import math
import os
import struct

import torch

SHAPES = {
    "mamba-130m": ("mamba", 24, 768), "mamba-370m": ("mamba", 48, 1024), "mamba-790m": ("mamba", 48, 1536),
    "mamba-1.4b": ("mamba", 48, 2048), "mamba-2.8b": ("mamba", 64, 2560),
    "mamba2-130m": ("mamba2", 24, 768), "mamba2-370m": ("mamba2", 48, 1024), "mamba2-780m": ("mamba2", 48, 1536),
    "mamba2-1.3b": ("mamba2", 48, 2048), "mamba2-2.7b": ("mamba2", 64, 2560),
}
DTYPES = {"bf16": (torch.bfloat16, "BF16"), "fp32": (torch.float32, "F32")}


def dt_bias(n, g):
    dt = torch.exp(torch.rand(n, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return dt + torch.log(-torch.expm1(-dt))  # softplus^-1


def build(shape, seed):
    kind, n_layer, d = SHAPES[shape]
    g = torch.Generator().manual_seed(seed)
    e = 2 * d
    vocab = 50280 if kind == "mamba" else 50288
    t = {"backbone.embeddings.weight": torch.randn(vocab, d, generator=g) * 0.02}
    if kind == "mamba":
        n, r = 16, (d + 15) // 16
        cfg = {"architectures": ["MambaForCausalLM"], "model_type": "mamba", "hidden_size": d,
               "intermediate_size": e, "state_size": n, "num_hidden_layers": n_layer, "conv_kernel": 4,
               "expand": 2, "time_step_rank": r, "use_bias": False, "use_conv_bias": True,
               "layer_norm_epsilon": 1e-5, "residual_in_fp32": True, "vocab_size": vocab,
               "tie_word_embeddings": True, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    else:
        n, hd = 128, 64
        h = e // hd
        cfg = {"architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", "hidden_size": d, "num_heads": h,
               "head_dim": hd, "n_groups": 1, "state_size": n, "num_hidden_layers": n_layer, "conv_kernel": 4,
               "expand": 2, "chunk_size": 256, "use_bias": False, "use_conv_bias": True,
               "layer_norm_epsilon": 1e-5, "residual_in_fp32": True, "vocab_size": vocab, "rms_norm": True,
               "tie_word_embeddings": True, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    for i in range(n_layer):
        p = f"backbone.layers.{i}."
        t[p + "norm.weight"] = torch.ones(d)
        if kind == "mamba":
            t[p + "mixer.in_proj.weight"] = torch.randn(2 * e, d, generator=g) * 0.02
            t[p + "mixer.conv1d.weight"] = (torch.rand(e, 1, 4, generator=g) * 2 - 1) / 2
            t[p + "mixer.conv1d.bias"] = (torch.rand(e, generator=g) * 2 - 1) / 2
            t[p + "mixer.x_proj.weight"] = torch.randn(r + 2 * n, e, generator=g) * 0.02
            t[p + "mixer.dt_proj.weight"] = (torch.rand(e, r, generator=g) * 2 - 1) * r ** -0.5
            t[p + "mixer.dt_proj.bias"] = dt_bias(e, g)
            t[p + "mixer.A_log"] = torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(e, 1)
        else:
            conv = e + 2 * n
            t[p + "mixer.in_proj.weight"] = torch.randn(2 * e + 2 * n + h, d, generator=g) * 0.02
            t[p + "mixer.conv1d.weight"] = (torch.rand(conv, 1, 4, generator=g) * 2 - 1) / 2
            t[p + "mixer.conv1d.bias"] = (torch.rand(conv, generator=g) * 2 - 1) / 2
            t[p + "mixer.dt_bias"] = dt_bias(h, g)
            t[p + "mixer.A_log"] = torch.log(torch.rand(h, generator=g) * 15 + 1)
            t[p + "mixer.norm.weight"] = torch.ones(e)
        t[p + "mixer.D"] = torch.ones(e if kind == "mamba" else h)
        t[p + "mixer.out_proj.weight"] = torch.randn(d, e, generator=g) * (0.02 / math.sqrt(2 * n_layer))
    t["backbone.norm_f.weight"] = torch.ones(d)
    return cfg, t


def write_safetensors(path, tensors, dtype):
    tdt, name = DTYPES[dtype]
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        x = tensors[k].to(tdt).contiguous()
        b = ctypes.string_at(x.data_ptr(), x.numel() * x.element_size())  # raw little-endian bytes, no numpy
        header[k] = {"dtype": name, "shape": list(tensors[k].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    cfg, t = build(a.shape, a.seed)
    write_safetensors(os.path.join(a.out, "model.safetensors"), t, a.dtype)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    n = sum(x.numel() for x in t.values())
    print(f"{a.shape}: {n / 1e6:.1f}M parameters -> {a.out}")


if __name__ == "__main__":
    main()
