"""Oracle for the checkpoint-loader tests (tests/unit/test_checkpoint.cpp).

Writes, under out_dir:
  good/<name>/        a loadable model directory plus expected.safetensors (every tensor the loader must return,
                      canonical names, float64, tied lm_head omitted) and expected.json (config values, n_params,
                      dtype, format, tied) computed here, independently of the C++ loader:
      ss_m1_tied_fp32     state-spaces Mamba1 pytorch_model.bin, lm_head sharing the embedding's storage, vocab
                          50 padded to 56, OrderedDict with _metadata (BUILD), a transposed (strided) view and two
                          tensors sharing one storage at different offsets
      ss_m1_untied_fp16   state-spaces Mamba1, untied lm_head, in/out_proj biases, no conv bias, dt_rank 3
      ss_m2_tied_bf16     state-spaces Mamba2 (ngroups 2, headdim 8, pad 16, dt_limit with a bare Infinity)
      hf_m1_untied_fp32   transformers MambaForCausalLM.save_pretrained, untied
      hf_m2_tied_fp16     transformers Mamba2ForCausalLM.save_pretrained, tied, n_groups 2
  bad/<name>/         model directories that must fail, with the expected exception and message fragments in
                      bad/cases.json: a missing tensor, a wrong shape, an unexpected tensor, an unknown
                      architecture, malformed config JSON, hybrid attention layers, a compressed zip entry, and
                      pickles naming os.system / builtins.eval (bytes built by hand from pickle opcodes, never
                      unpickled here).
  organisms.json      per-tensor float64 sums and shapes of the two bundled organisms (read with safetensors).
"""
import collections
import hashlib
import json
import math
import pathlib
import shutil
import struct
import zipfile

import torch

VERSION = 1
ROOT = pathlib.Path(__file__).resolve().parents[2]
DT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def ss_mamba1_tensors(d_model, n_layer, vocab_pad, d_state=16, expand=2, dt_rank=None, d_conv=4,
                      bias=False, conv_bias=True, gen=None):
    E, R = expand * d_model, dt_rank or math.ceil(d_model / 16)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    t = collections.OrderedDict()
    t["backbone.embedding.weight"] = r(vocab_pad, d_model)
    for i in range(n_layer):
        p = f"backbone.layers.{i}."
        t[p + "mixer.in_proj.weight"] = r(2 * E, d_model)
        if bias:
            t[p + "mixer.in_proj.bias"] = r(2 * E)
        t[p + "mixer.conv1d.weight"] = r(E, 1, d_conv)
        if conv_bias:
            t[p + "mixer.conv1d.bias"] = r(E)
        t[p + "mixer.x_proj.weight"] = r(R + 2 * d_state, E)
        t[p + "mixer.dt_proj.weight"] = r(E, R)
        t[p + "mixer.dt_proj.bias"] = r(E)
        t[p + "mixer.A_log"] = r(E, d_state)
        t[p + "mixer.D"] = r(E)
        t[p + "mixer.out_proj.weight"] = r(d_model, E)
        if bias:
            t[p + "mixer.out_proj.bias"] = r(d_model)
        t[p + "norm.weight"] = r(d_model)
    t["backbone.norm_f.weight"] = r(d_model)
    return t


def ss_mamba2_tensors(d_model, n_layer, vocab_pad, d_state, headdim, ngroups, expand=2, d_conv=4, gen=None):
    E = expand * d_model
    H, G = E // headdim, ngroups
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    t = collections.OrderedDict()
    t["backbone.embedding.weight"] = r(vocab_pad, d_model)
    for i in range(n_layer):
        p = f"backbone.layers.{i}."
        t[p + "mixer.in_proj.weight"] = r(2 * E + 2 * G * d_state + H, d_model)
        t[p + "mixer.conv1d.weight"] = r(E + 2 * G * d_state, 1, d_conv)
        t[p + "mixer.conv1d.bias"] = r(E + 2 * G * d_state)
        t[p + "mixer.dt_bias"] = r(H)
        t[p + "mixer.A_log"] = r(H)
        t[p + "mixer.D"] = r(H)
        t[p + "mixer.norm.weight"] = r(E)
        t[p + "mixer.out_proj.weight"] = r(d_model, E)
        t[p + "norm.weight"] = r(d_model)
    t["backbone.norm_f.weight"] = r(d_model)
    return t


def canonical(name):
    if name == "lm_head.weight":
        return name
    name = name[len("backbone."):] if name.startswith("backbone.") else name
    return "embedding.weight" if name == "embeddings.weight" else name


def write_expected(dest, tensors, info):
    """expected.safetensors (float64, canonical names) + expected.json; `tensors` excludes a tied lm_head."""
    from safetensors.torch import save_file
    exp = {canonical(k): v.detach().to(torch.float64).contiguous().clone() for k, v in tensors.items()}
    save_file(exp, str(dest / "expected.safetensors"))
    info = dict(info, n_params=sum(v.numel() for v in exp.values()), tensors=sorted(exp),
                config_sha256=hashlib.sha256((dest / "config.json").read_bytes()).hexdigest())
    (dest / "expected.json").write_text(json.dumps(info, indent=1))


def save_state_spaces(dest, config, tensors, dtype, tied, gen, views=False):
    """torch.save of a state dict as mamba_ssm's MambaLMHeadModel writes it (OrderedDict with _metadata)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.json").write_text(json.dumps(config, indent=2))  # bare Infinity where a float is inf
    sd = collections.OrderedDict((k, v.to(DT[dtype])) for k, v in tensors.items())
    if views:
        # out_proj of layer 0 as a transposed view (non-contiguous strides), A_log and D of layer 0 as two
        # views of one storage at different offsets: the loader must honour offset, size and stride.
        p = "backbone.layers.0.mixer."
        sd[p + "out_proj.weight"] = sd[p + "out_proj.weight"].t().contiguous().t()
        a, d = sd[p + "A_log"], sd[p + "D"]
        buf = torch.cat([d.reshape(-1), a.reshape(-1)])
        sd[p + "D"] = buf[: d.numel()].view(d.shape)
        sd[p + "A_log"] = buf[d.numel():].view(a.shape)
    sd["lm_head.weight"] = sd["backbone.embedding.weight"] if tied else torch.randn(
        sd["backbone.embedding.weight"].shape, generator=gen, dtype=torch.float64).to(DT[dtype])
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("backbone", {"version": 1})])
    torch.save(sd, dest / "pytorch_model.bin")
    kept = collections.OrderedDict((k, v) for k, v in sd.items() if not (tied and k == "lm_head.weight"))
    return kept


def good_fixtures(out):
    gen = torch.Generator().manual_seed(1234)
    g = out / "good"

    # state-spaces Mamba1, tied, fp32, vocab 50 -> 56, minimal config (defaults for everything else)
    cfg = {"d_model": 16, "n_layer": 2, "vocab_size": 50, "ssm_cfg": {}, "rms_norm": True, "residual_in_fp32": True,
           "fused_add_norm": True, "pad_vocab_size_multiple": 8}
    kept = save_state_spaces(g / "ss_m1_tied_fp32", cfg, ss_mamba1_tensors(16, 2, 56, gen=gen), "fp32", True, gen,
                             views=True)
    write_expected(g / "ss_m1_tied_fp32", kept, dict(arch="mamba1", n_layer=2, d_model=16, d_inner=32, d_state=16,
                   d_conv=4, dt_rank=1, vocab_size=56, vocab_size_unpadded=50, dtype="float32",
                   format="pytorch_model.bin", tied=True, scheme="state-spaces", use_bias=False, use_conv_bias=True))

    # state-spaces Mamba1, untied, fp16, biases on, no conv bias, dt_rank 3, d_state 8
    cfg = {"d_model": 24, "n_layer": 3, "vocab_size": 64, "ssm_cfg": {"layer": "Mamba1", "d_state": 8, "dt_rank": 3,
           "bias": True, "conv_bias": False}, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
           "pad_vocab_size_multiple": 8, "tie_embeddings": False}
    t = ss_mamba1_tensors(24, 3, 64, d_state=8, dt_rank=3, bias=True, conv_bias=False, gen=gen)
    kept = save_state_spaces(g / "ss_m1_untied_fp16", cfg, t, "fp16", False, gen)
    write_expected(g / "ss_m1_untied_fp16", kept, dict(arch="mamba1", n_layer=3, d_model=24, d_inner=48, d_state=8,
                   d_conv=4, dt_rank=3, vocab_size=64, vocab_size_unpadded=64, dtype="float16",
                   format="pytorch_model.bin", tied=False, scheme="state-spaces", use_bias=True, use_conv_bias=False))

    # state-spaces Mamba2, tied, bf16, ngroups 2, headdim 8 -> 4 heads, vocab 50 -> 64, bare Infinity in dt_limit
    cfg = {"d_model": 16, "n_layer": 2, "d_intermediate": 0, "vocab_size": 50,
           "ssm_cfg": {"layer": "Mamba2", "d_state": 16, "headdim": 8, "ngroups": 2, "chunk_size": 64,
                       "dt_limit": [0.0, float("inf")]},
           "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
           "pad_vocab_size_multiple": 16, "tie_embeddings": True}
    kept = save_state_spaces(g / "ss_m2_tied_bf16", cfg, ss_mamba2_tensors(16, 2, 64, 16, 8, 2, gen=gen), "bf16",
                             True, gen)
    write_expected(g / "ss_m2_tied_bf16", kept, dict(arch="mamba2", n_layer=2, d_model=16, d_inner=32, d_state=16,
                   d_conv=4, n_heads=4, head_dim=8, n_groups=2, chunk_size=64, vocab_size=64, vocab_size_unpadded=50,
                   dtype="bfloat16", format="pytorch_model.bin", tied=True, scheme="state-spaces",
                   dt_limit_max="inf"))

    # Hugging Face, through transformers' own save_pretrained (names, tie handling, config serialisation)
    from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM
    torch.manual_seed(0)
    hc = MambaConfig(vocab_size=72, hidden_size=16, state_size=8, num_hidden_layers=2, tie_word_embeddings=False,
                     time_step_rank=4)
    m = MambaForCausalLM(hc).eval()
    d = g / "hf_m1_untied_fp32"
    m.save_pretrained(d)
    write_expected(d, dict(m.state_dict()), dict(arch="mamba1", n_layer=2, d_model=16, d_inner=32, d_state=8,
                   d_conv=4, dt_rank=4, vocab_size=72, vocab_size_unpadded=72, dtype="float32", format="safetensors",
                   tied=False, scheme="hf", use_bias=False, use_conv_bias=True))

    hc = Mamba2Config(vocab_size=80, hidden_size=16, state_size=8, num_hidden_layers=2, num_heads=4, head_dim=8,
                      n_groups=2, chunk_size=32, tie_word_embeddings=True)
    m = Mamba2ForCausalLM(hc).eval().to(torch.float16)
    d = g / "hf_m2_tied_fp16"
    m.save_pretrained(d)
    sd = {k: v for k, v in m.state_dict().items() if k != "lm_head.weight"}
    write_expected(d, sd, dict(arch="mamba2", n_layer=2, d_model=16, d_inner=32, d_state=8, d_conv=4, n_heads=4,
                   head_dim=8, n_groups=2, chunk_size=32, vocab_size=80, vocab_size_unpadded=80, dtype="float16",
                   format="safetensors", tied=True, scheme="hf", dt_limit_max="inf"))


def evil_pickle(module, name):
    """protocol-2 bytes for `module.name('echo pwned')`, written opcode by opcode (never unpickled)."""
    arg = b"echo pwned"
    return (b"\x80\x02" + b"c" + module.encode() + b"\n" + name.encode() + b"\n" + b"q\x00"
            + b"X" + struct.pack("<I", len(arg)) + arg + b"q\x01" + b"\x85q\x02" + b"Rq\x03" + b".")


def evil_in_state_dict(module, name):
    """A plausible state dict {'x': module.name()} : OrderedDict, then the forbidden global as a value."""
    return (b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00xq\x02"
            + b"c" + module.encode() + b"\n" + name.encode() + b"\nq\x03)Rq\x04u.")


def write_zip(path, pickle_bytes, compress=False):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


def bad_fixtures(out):
    gen = torch.Generator().manual_seed(99)
    b = out / "bad"
    good = out / "good"
    cases = []

    def copy_good(src, name):
        d = b / name
        shutil.copytree(good / src, d, ignore=shutil.ignore_patterns("expected.*"))
        return d

    def case(name, error, *fragments):
        cases.append({"name": name, "error": error, "contains": list(fragments)})

    ss_cfg = json.loads((good / "ss_m1_tied_fp32" / "config.json").read_text())

    # a missing tensor (state-spaces pickle without layer 1's A_log)
    t = ss_mamba1_tensors(16, 2, 56, gen=gen)
    del t["backbone.layers.1.mixer.A_log"]
    save_state_spaces(b / "missing_tensor", ss_cfg, t, "fp32", True, gen)
    case("missing_tensor", "CheckpointError", "pytorch_model.bin", "backbone.layers.1.mixer.A_log", "missing")

    # a wrong shape (x_proj with one row too many)
    t = ss_mamba1_tensors(16, 2, 56, gen=gen)
    t["backbone.layers.0.mixer.x_proj.weight"] = torch.randn(1 + 2 * 16 + 1, 32, generator=gen, dtype=torch.float64)
    save_state_spaces(b / "wrong_shape", ss_cfg, t, "fp32", True, gen)
    case("wrong_shape", "CheckpointError", "pytorch_model.bin", "backbone.layers.0.mixer.x_proj.weight", "[34, 32]",
         "[33, 32]")

    # an unexpected tensor
    t = ss_mamba1_tensors(16, 2, 56, gen=gen)
    t["backbone.layers.0.mixer.bogus"] = torch.zeros(3, dtype=torch.float64)
    save_state_spaces(b / "unexpected_tensor", ss_cfg, t, "fp32", True, gen)
    case("unexpected_tensor", "CheckpointError", "pytorch_model.bin", "backbone.layers.0.mixer.bogus", "unexpected")

    # an HF safetensors model missing one tensor (file rewritten without it)
    from safetensors.torch import load_file, save_file
    d = copy_good("hf_m1_untied_fp32", "hf_missing_tensor")
    w = load_file(str(d / "model.safetensors"))
    del w["backbone.layers.1.mixer.dt_proj.bias"]
    save_file(w, str(d / "model.safetensors"), metadata={"format": "pt"})
    case("hf_missing_tensor", "CheckpointError", "model.safetensors", "backbone.layers.1.mixer.dt_proj.bias")

    # an unknown architecture
    d = copy_good("hf_m1_untied_fp32", "unknown_arch")
    c = json.loads((d / "config.json").read_text())
    c["model_type"] = "falcon_mamba"
    (d / "config.json").write_text(json.dumps(c))
    case("unknown_arch", "ConfigError", "config.json", "model_type", "falcon_mamba")

    # malformed JSON (config cut in the middle)
    d = copy_good("hf_m1_untied_fp32", "malformed_json")
    text = (d / "config.json").read_text()
    (d / "config.json").write_text(text[: len(text) // 2])
    case("malformed_json", "ConfigError", "config.json", "malformed JSON")

    # a mistyped field
    d = copy_good("hf_m1_untied_fp32", "mistyped_field")
    c = json.loads((d / "config.json").read_text())
    c["hidden_size"] = "sixteen"
    (d / "config.json").write_text(json.dumps(c))
    case("mistyped_field", "ConfigError", "config.json", "hidden_size", "sixteen")

    # hybrid attention layers (state-spaces)
    d = copy_good("ss_m2_tied_bf16", "hybrid_attention")
    c = json.loads((d / "config.json").read_text())
    c["attn_layer_idx"] = [1]
    (d / "config.json").write_text(json.dumps(c))
    case("hybrid_attention", "ConfigError", "config.json", "attn_layer_idx")

    # compressed zip entry
    d = copy_good("ss_m1_tied_fp32", "compressed_zip")
    with zipfile.ZipFile(good / "ss_m1_tied_fp32" / "pytorch_model.bin") as zin, \
            zipfile.ZipFile(d / "pytorch_model.bin", "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item.filename))
    case("compressed_zip", "CheckpointError", "pytorch_model.bin", "compressed")

    # pickles that name a forbidden global: refused before anything could run
    for name, (mod, fn), builder in [("evil_os_system", ("os", "system"), evil_pickle),
                                     ("evil_builtins_eval", ("builtins", "eval"), evil_pickle),
                                     ("evil_in_state_dict", ("posix", "system"), evil_in_state_dict),
                                     ("evil_torch_load", ("torch", "load"), evil_in_state_dict)]:
        d = b / name
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps(ss_cfg))
        write_zip(d / "pytorch_model.bin", builder(mod, fn))
        case(name, "CheckpointError", "pytorch_model.bin", f"pickle names global {mod}.{fn}, which is not allowed")

    (b / "cases.json").write_text(json.dumps(cases, indent=1))
    return len(cases)


def organisms(out):
    from safetensors import safe_open
    res = {}
    for arch in ("mamba1", "mamba2"):
        d = ROOT / "assets" / "models" / f"organism-{arch}-7m"
        sums = {}
        for f in sorted(d.glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():
                    t = st.get_tensor(k).to(torch.float64)
                    sums[canonical(k)] = {"sum": t.sum().item(), "abs_sum": t.abs().sum().item(),
                                          "shape": list(t.shape)}
        res[arch] = {"dir": str(d.relative_to(ROOT)), "tensors": sums,
                     "n_params": sum(math.prod(v["shape"]) for v in sums.values()),
                     "config_sha256": hashlib.sha256((d / "config.json").read_bytes()).hexdigest()}
    (out / "organisms.json").write_text(json.dumps(res, indent=1))


def main(out_dir):
    out = pathlib.Path(out_dir)
    for sub in ("good", "bad"):
        shutil.rmtree(out / sub, ignore_errors=True)
    good_fixtures(out)
    n_bad = bad_fixtures(out)
    organisms(out)
    return {"version": VERSION, "bad_cases": n_bad, "torch": torch.__version__}


if __name__ == "__main__":
    import sys
    main(sys.argv[1])
