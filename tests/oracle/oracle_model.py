"""Oracle for the model parity tests (tests/unit/test_model_parity.cpp): Hugging Face transformers logits.

Computes, with transformers 5.17 on CPU in fp32 (TF32 off, fixed seeds, pure-PyTorch slow paths):
  * tiny random MambaForCausalLM / Mamba2ForCausalLM models (MODELS below), each saved twice:
      models/<name>/hf/  config.json + model.safetensors          (save_pretrained)
      models/<name>/ss/  config.json + pytorch_model.bin          (state-spaces MambaLMHeadModel layout)
    and, per sequence length, cases/<name>_L<len>.safetensors holding
      ids (B, L) int64, logits (B, L, V_pad) fp32,
      scales_scalar (n_layer, 1), logits_scalar, scales_vector (n_layer, W), logits_vector  (Δ-scale oracle)
      logits_hf_ungrouped (Mamba2 with n_groups > 1 only: HF's own, unpatched gated norm, see below).
  * the two organisms (assets/models/organism-mamba{1,2}-7m, bf16 weights run in fp32) on the first 512 tokens
    of assets/books/validation/23.txt (GPT-NeoX tokenizer, no BOS): organism_<arch>.safetensors with ids,
    per-position NLL of the next token, logsumexp, max logit, top-2 gap, argmax, and full logits of some rows.

Paths HF takes on CPU (no mamba_ssm / causal_conv1d / kernels installed, model in eval mode):
  * Mamba1: mamba_selective_scan's sequential loop over time ("Recurrent iteration"). use_associative_scan
    (config default true) only applies while torch.compile is tracing, use_mambapy is false.
  * Mamba2: mamba2_chunk_scan, the chunked SSD in PyTorch; chunk_size 32 < L = 33 / 130 exercises the
    inter-chunk state passing.
  Both are checked at run time: the Δ patch counts one softplus call per layer per forward.

Patches applied to HF (recorded in the manifest):
  * Δ scales (MambaExtend): `F.softplus` inside the HF modeling module is replaced by s_l ⊙ softplus(·), i.e.
    the scale enters exactly where HF computes its softplus, so it multiplies Δ in exp(Δ·A) and in Δ·B·x alike.
    For Mamba2 the scale goes after the time_step_limit clamp (kernels.md §2: Δ = s · clamp(softplus(dt+b));
    model.h says the same): the patched softplus clamps itself and HF's own clamp is set to (0, inf) meanwhile.
    With s = 1 the patched run reproduces the unpatched logits bit for bit (asserted).
  * Mamba2 gated RMSNorm: transformers 5.17's MambaRMSNormGated normalises over all of d_inner and ignores
    n_groups. mamba_ssm (RMSNormGated with group_size = d_inner / ngroups) and our model normalise each of the
    G groups separately. For every Mamba2 model the oracle replaces the norm's forward by the grouped one
    (identical math for G = 1); for G > 1 the unpatched HF output is saved too as logits_hf_ungrouped.
Limits: batch ≤ 2, lengths ≤ 130 for tiny models and 512 for the organisms; everything fp32 (one model per
architecture stores bf16-rounded weights to exercise the bf16 readers, still computed in fp32).
"""
import collections
import contextlib
import json
import math
import pathlib
import types

import torch
import torch.nn.functional as F

VERSION = 1
ROOT = pathlib.Path(__file__).resolve().parents[2]

# Tiny random models. vocab = HF vocab (already padded, the embedding's rows); ss_vocab/pad = what the
# state-spaces config.json says (vocab_size unpadded + pad_vocab_size_multiple), round_up(ss_vocab, pad) == vocab.
MODELS = [
    dict(name="m1_n16_tied", arch="mamba1", hidden=32, layers=2, state=16, vocab=320, tied=True,
         ss_vocab=320, pad=8, minimal_ss_config=True),
    dict(name="m1_n64_untied", arch="mamba1", hidden=48, layers=3, state=64, vocab=320, tied=False,
         ss_vocab=320, pad=8),
    dict(name="m1_n128_padvocab", arch="mamba1", hidden=64, layers=2, state=128, vocab=304, tied=True,
         ss_vocab=301, pad=8, dt_rank=6),
    dict(name="m1_n16_bf16", arch="mamba1", hidden=32, layers=2, state=16, vocab=320, tied=True,
         ss_vocab=320, pad=8, store="bfloat16"),
    dict(name="m2_n16_g1", arch="mamba2", hidden=32, layers=2, state=16, head_dim=16, groups=1, vocab=320,
         tied=True, ss_vocab=320, pad=16),
    dict(name="m2_n64_g2_untied", arch="mamba2", hidden=48, layers=3, state=64, head_dim=8, groups=2,
         vocab=320, tied=False, ss_vocab=320, pad=16),
    dict(name="m2_n128_g4_clamp", arch="mamba2", hidden=64, layers=2, state=128, head_dim=16, groups=4,
         vocab=304, tied=True, ss_vocab=290, pad=16, dt_limit=(0.004, 0.15)),
    dict(name="m2_n64_g2_bf16", arch="mamba2", hidden=32, layers=2, state=64, head_dim=8, groups=2, vocab=320,
         tied=True, ss_vocab=317, pad=16, store="bfloat16"),
]
CHUNK = 32                                 # Mamba2 chunk_size: smaller than L = 33 and 130
SHAPES = [(1, 1), (1, 7), (2, 33), (1, 130)]  # (batch, length)
ORGANISM_TOKENS = 512
ORGANISM_ROWS = [0, 1, 63, 127, 128, 255, 256, 383]  # full-logit rows besides the last 8


def _setup_torch() -> None:
    torch.set_num_threads(2)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(0)


def _inv_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def _log_uniform(gen, shape, lo, hi):
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))).float()


def _uniform(gen, shape, lo, hi):
    return (lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)).float()


# ---- tiny random models ------------------------------------------------------------------------------------
def _build_hf(spec):
    from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM
    common = dict(vocab_size=spec["vocab"], hidden_size=spec["hidden"], num_hidden_layers=spec["layers"],
                  state_size=spec["state"], expand=2, conv_kernel=4, layer_norm_epsilon=1e-5,
                  tie_word_embeddings=spec["tied"], use_cache=False, pad_token_id=0, bos_token_id=0,
                  eos_token_id=0)
    if spec["arch"] == "mamba1":
        cfg = MambaConfig(time_step_rank=spec.get("dt_rank", "auto"), **common)
        model = MambaForCausalLM(cfg)
    else:
        e = 2 * spec["hidden"]
        lim = spec.get("dt_limit", (0.0, float("inf")))
        cfg = Mamba2Config(num_heads=e // spec["head_dim"], head_dim=spec["head_dim"], n_groups=spec["groups"],
                           chunk_size=CHUNK, time_step_limit=tuple(lim), **common)
        model = Mamba2ForCausalLM(cfg)
    return model.float().eval()


@torch.no_grad()
def _randomise(model, spec, gen) -> None:
    """Realistic random weights: nothing trivially identity, softplus(dt) spread over ~[1e-3, 1]."""
    n = spec["state"]
    for name, p in model.named_parameters():
        shape = p.shape
        if name.endswith("embeddings.weight") or name == "lm_head.weight":
            v = torch.randn(shape, generator=gen) * 0.3
        elif name.endswith("norm.weight") or name.endswith("norm_f.weight"):
            v = _uniform(gen, shape, 0.5, 1.5)
        elif name.endswith("conv1d.weight"):
            v = _uniform(gen, shape, -0.5, 0.5)
        elif name.endswith("conv1d.bias"):
            v = _uniform(gen, shape, -0.2, 0.2)
        elif name.endswith("dt_proj.weight"):
            b = shape[1] ** -0.5
            v = _uniform(gen, shape, -b, b)
        elif name.endswith("dt_proj.bias") or name.endswith("dt_bias"):
            v = _inv_softplus(_log_uniform(gen, shape, 2e-3, 0.3).double()).float()
        elif name.endswith("A_log"):
            if spec["arch"] == "mamba1":   # around S4D-real init A = 1..N, perturbed per channel
                base = torch.arange(1, n + 1, dtype=torch.float64).expand(shape)
                v = torch.log(base * torch.exp(0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)))
            else:
                v = torch.log(_uniform(gen, shape, 1.0, 16.0).double())
            v = v.float()
        elif name.endswith(".D"):
            v = (1.0 + 0.5 * torch.randn(shape, generator=gen))
        elif name.endswith(".weight") and p.dim() == 2:  # in_proj, x_proj, out_proj
            b = shape[1] ** -0.5
            v = _uniform(gen, shape, -b, b)
        else:
            raise RuntimeError(f"oracle_model: no randomisation rule for parameter {name} {tuple(shape)}")
        p.copy_(v.to(p.dtype))
    if spec.get("store") == "bfloat16":  # the stored weights are bf16: compute with exactly those values
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())


def _ss_config(spec) -> dict:
    """config.json in mamba_ssm's MambaConfig form."""
    if spec["arch"] == "mamba1":
        ssm_cfg = {}
        if spec["state"] != 16:
            ssm_cfg["d_state"] = spec["state"]
        if "dt_rank" in spec:
            ssm_cfg["dt_rank"] = spec["dt_rank"]
    else:
        ssm_cfg = {"layer": "Mamba2", "d_state": spec["state"], "headdim": spec["head_dim"],
                   "ngroups": spec["groups"], "chunk_size": CHUNK}
        if "dt_limit" in spec:
            ssm_cfg["dt_limit"] = list(spec["dt_limit"])
    if spec.get("minimal_ss_config"):  # exactly the keys of state-spaces/mamba-130m's config.json
        return {"d_model": spec["hidden"], "n_layer": spec["layers"], "vocab_size": spec["ss_vocab"],
                "ssm_cfg": ssm_cfg, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
                "pad_vocab_size_multiple": spec["pad"]}
    return {"d_model": spec["hidden"], "d_intermediate": 0, "n_layer": spec["layers"],
            "vocab_size": spec["ss_vocab"], "ssm_cfg": ssm_cfg, "attn_layer_idx": [], "attn_cfg": {},
            "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
            "pad_vocab_size_multiple": spec["pad"], "tie_embeddings": spec["tied"]}


def _save_state_spaces(model, spec, dest: pathlib.Path) -> None:
    """pytorch_model.bin with state-spaces names; a tied lm_head shares the embedding's storage."""
    dtype = torch.bfloat16 if spec.get("store") == "bfloat16" else torch.float32
    sd = collections.OrderedDict()
    meta = collections.OrderedDict({"": {"version": 1}, "backbone": {"version": 1}})
    emb = model.backbone.embeddings.weight.detach().to(dtype).clone()
    sd["backbone.embedding.weight"] = emb
    for name, p in model.named_parameters():
        if name.startswith("backbone.embeddings.") or name == "lm_head.weight":
            continue
        sd[name] = p.detach().to(dtype).clone()
        parts = name.split(".")
        for k in range(1, len(parts)):
            meta[".".join(parts[:k])] = {"version": 1}
    sd["lm_head.weight"] = emb if spec["tied"] else model.lm_head.weight.detach().to(dtype).clone()
    meta["lm_head"] = {"version": 1}
    sd._metadata = meta  # as nn.Module.state_dict() leaves it: pickled as a BUILD on the OrderedDict
    dest.mkdir(parents=True, exist_ok=True)
    torch.save(sd, dest / "pytorch_model.bin")
    (dest / "config.json").write_text(json.dumps(_ss_config(spec), indent=2))


def _save_hf(model, spec, dest: pathlib.Path) -> None:
    if spec.get("store") == "bfloat16":
        model.to(torch.bfloat16).save_pretrained(dest)
        model.float()
    else:
        model.save_pretrained(dest)
    names = sorted(p.name for p in dest.iterdir())
    if "model.safetensors" not in names:
        raise RuntimeError(f"oracle_model: save_pretrained wrote {names}, expected model.safetensors")


# ---- HF patches --------------------------------------------------------------------------------------------
class _SoftplusProxy:
    """Stands in for torch.nn.functional inside an HF modeling module: softplus returns s ⊙ clamp(softplus)."""

    def __init__(self):
        self.scale = None       # broadcastable to HF's dt at the softplus call
        self.limit = None       # Mamba2 time_step_limit of the current layer (applied before the scale)
        self.calls = 0

    def __getattr__(self, name):
        return getattr(F, name)

    def softplus(self, x, *args, **kwargs):
        self.calls += 1
        y = F.softplus(x, *args, **kwargs)
        if self.limit is not None:
            y = torch.clamp(y, min=self.limit[0], max=self.limit[1])
        return y * self.scale


@contextlib.contextmanager
def _patched_scales(model, arch, scales):
    """Runs HF with Δ = s_l ⊙ softplus(·) (Mamba2: s_l ⊙ clamp(softplus(·))); scales: (n_layer, 1 or W)."""
    import transformers.models.mamba.modeling_mamba as m1
    import transformers.models.mamba2.modeling_mamba2 as m2
    module = m1 if arch == "mamba1" else m2
    proxy = _SoftplusProxy()
    hooks, limits = [], []
    for i, layer in enumerate(model.backbone.layers):
        mixer = layer.mixer
        s = scales[i].float()
        # Mamba1: dt is (B, E, L) at the softplus; Mamba2 chunk scan: dt is (B, L, H).
        s = s.view(-1, 1) if arch == "mamba1" else s.view(-1)
        if arch == "mamba2":
            limits.append(mixer.time_step_limit)

        def pre_hook(mod, args, s=s, lim=(mixer.time_step_limit if arch == "mamba2" else None)):
            proxy.scale, proxy.limit = s, lim
        hooks.append(mixer.register_forward_pre_hook(pre_hook))
        if arch == "mamba2":
            mixer.time_step_limit = (0.0, float("inf"))
    saved_f = module.F
    module.F = proxy
    try:
        yield proxy
    finally:
        module.F = saved_f
        for h in hooks:
            h.remove()
        if arch == "mamba2":
            for layer, lim in zip(model.backbone.layers, limits):
                layer.mixer.time_step_limit = lim


def _grouped_gated_norm(self, hidden_states, gate=None):
    """mamba_ssm's RMSNormGated(norm_before_gate=False, group_size=E/G): y·silu(z), RMS per group, ·w."""
    input_dtype = hidden_states.dtype
    h = hidden_states.to(torch.float32)
    if gate is not None:
        h = h * F.silu(gate.to(torch.float32))
    shape = h.shape
    h = h.view(*shape[:-1], self.mx_groups, shape[-1] // self.mx_groups)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = (h * torch.rsqrt(variance + self.variance_epsilon)).view(shape)
    return self.weight * h.to(input_dtype)


def _patch_grouped_norm(model, groups: int) -> None:
    for layer in model.backbone.layers:
        norm = layer.mixer.norm
        norm.mx_groups = groups
        norm.forward = types.MethodType(_grouped_gated_norm, norm)


@contextlib.contextmanager
def _unpatched_norm(model):
    saved = [layer.mixer.norm.__dict__.pop("forward") for layer in model.backbone.layers]
    try:
        yield
    finally:
        for layer, fwd in zip(model.backbone.layers, saved):
            layer.mixer.norm.forward = fwd


@torch.no_grad()
def _logits(model, ids):
    return model(input_ids=ids, use_cache=False).logits.float().contiguous()


@torch.no_grad()
def _check_round_trip(spec, mdir: pathlib.Path, ids, ref) -> None:
    """Both saved layouts, read back by HF itself, must reproduce `ref` bit for bit."""
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(str(mdir / "hf"), dtype=torch.float32).eval()
    ss = _build_hf(spec)
    sd = torch.load(mdir / "ss" / "pytorch_model.bin", weights_only=True)
    ss.load_state_dict({k.replace("backbone.embedding.", "backbone.embeddings."): v.float() for k, v in sd.items()})
    for layout, model in (("hf", hf), ("ss", ss)):
        if spec["arch"] == "mamba2":
            _patch_grouped_norm(model, spec["groups"])
        if not torch.equal(_logits(model, ids), ref):
            raise RuntimeError(f"oracle_model: {spec['name']}: the saved {layout} layout does not reload exactly")


@torch.no_grad()
def _dt_range(model, arch, ids):
    """min/max of softplus(dt) over all layers for `ids` (realism check recorded in the manifest)."""
    n = len(model.backbone.layers)
    with _patched_scales(model, arch, torch.ones(n, 1)) as proxy:
        seen = []
        orig = _SoftplusProxy.softplus

        def spy(self, x, *a, **k):
            y = orig(self, x, *a, **k)
            seen.append((y.min().item(), y.max().item()))
            return y
        _SoftplusProxy.softplus = spy
        try:
            _logits(model, ids)
        finally:
            _SoftplusProxy.softplus = orig
    return min(s[0] for s in seen), max(s[1] for s in seen)


def _tiny_model(spec, out: pathlib.Path, seed: int) -> dict:
    from safetensors.torch import save_file
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = _build_hf(spec)
    _randomise(model, spec, gen)
    arch, n_layer = spec["arch"], spec["layers"]
    groups = spec.get("groups", 1)
    if arch == "mamba2":
        _patch_grouped_norm(model, groups)
    mdir = out / "models" / spec["name"]
    _save_hf(model, spec, mdir / "hf")
    _save_state_spaces(model, spec, mdir / "ss")
    width = 2 * spec["hidden"] if arch == "mamba1" else 2 * spec["hidden"] // spec["head_dim"]
    # Per-layer scalars well away from 1 (in [1/3, 1/2] or [2, 3]) so that they visibly move the logits;
    # per-channel / per-head vectors log-uniform in [0.3, 3].
    far = _log_uniform(gen, (n_layer, 1), 2.0, 3.0)
    flip = torch.rand((n_layer, 1), generator=gen) < 0.5
    scales_scalar = torch.where(flip, 1.0 / far, far)
    scales_vector = _log_uniform(gen, (n_layer, width), 0.3, 3.0)
    cases = []
    max_group_effect = 0.0
    for batch, length in SHAPES:
        ids = torch.randint(0, spec["ss_vocab"], (batch, length), generator=gen, dtype=torch.int64)
        ref = _logits(model, ids)
        if length == 33:
            _check_round_trip(spec, mdir, ids, ref)
        with _patched_scales(model, arch, torch.ones(n_layer, 1)) as proxy:
            same = _logits(model, ids)
        if not torch.equal(same, ref) or proxy.calls != n_layer:
            raise RuntimeError(f"oracle_model: {spec['name']}: the Δ patch is not on HF's path "
                               f"(softplus calls {proxy.calls}, expected {n_layer}, or s=1 changed the logits)")
        with _patched_scales(model, arch, scales_scalar):
            ls = _logits(model, ids)
        with _patched_scales(model, arch, scales_vector):
            lv = _logits(model, ids)
        tensors = {"ids": ids, "logits": ref, "scales_scalar": scales_scalar, "logits_scalar": ls,
                   "scales_vector": scales_vector, "logits_vector": lv}
        if arch == "mamba2" and groups > 1:
            with _unpatched_norm(model):
                ung = _logits(model, ids)
            tensors["logits_hf_ungrouped"] = ung
            max_group_effect = max(max_group_effect, ((ung - ref).abs().max() / ref.abs().max()).item())
        fname = f"{spec['name']}_B{batch}_L{length}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "cases" / fname))
        cases.append({"file": f"cases/{fname}", "batch": batch, "length": length})
    dt_lo, dt_hi = _dt_range(model, arch, ids)
    info = {k: v for k, v in spec.items() if k not in ("dt_limit",)}
    info.update({"hf_dir": f"models/{spec['name']}/hf", "ss_dir": f"models/{spec['name']}/ss", "cases": cases,
                 "scale_width": width, "softplus_dt_range": [dt_lo, dt_hi], "seed": seed})
    if "dt_limit" in spec:
        info["dt_limit"] = list(spec["dt_limit"])
    if arch == "mamba2":
        info["hf_patched_grouped_norm"] = groups > 1
        if groups > 1:
            info["hf_ungrouped_max_rel_diff"] = max_group_effect
    return info


# ---- organisms ---------------------------------------------------------------------------------------------
@torch.no_grad()
def _organism(arch: str, out: pathlib.Path) -> dict:
    from safetensors.torch import save_file
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    mdir = ROOT / "assets" / "models" / f"organism-{arch}-7m"
    tok = Tokenizer.from_file(str(ROOT / "assets" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"))
    text = (ROOT / "assets" / "books" / "validation" / "23.txt").read_text(encoding="utf-8")
    ids = tok.encode(text, add_special_tokens=False).ids[:ORGANISM_TOKENS]
    ids = torch.tensor([ids], dtype=torch.int64)  # (1, 512)
    model = AutoModelForCausalLM.from_pretrained(str(mdir), dtype=torch.float32).eval()
    if arch == "mamba2":
        _patch_grouped_norm(model, model.config.n_groups)  # n_groups = 1: same math as HF's, for uniformity
    logits = _logits(model, ids)[0]  # (L, V_pad)
    logp = torch.log_softmax(logits.double(), dim=-1)
    nll = -logp[:-1].gather(1, ids[0, 1:, None])[:, 0]           # (L-1,) NLL of the actual next token
    top2 = logits.topk(2, dim=-1).values                          # (L, 2)
    rows = torch.tensor(ORGANISM_ROWS + list(range(ORGANISM_TOKENS - 8, ORGANISM_TOKENS)), dtype=torch.int64)
    tensors = {"ids": ids, "nll": nll, "logsumexp": torch.logsumexp(logits.double(), dim=-1),
               "max_logit": top2[:, 0].contiguous(), "top2_gap": (top2[:, 0] - top2[:, 1]).contiguous(),
               "argmax": logits.argmax(dim=-1), "rows": rows, "row_logits": logits[rows].contiguous()}
    fname = f"organism_{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / fname))
    return {"model_dir": f"assets/models/organism-{arch}-7m", "file": fname, "tokens": ORGANISM_TOKENS,
            "book": "assets/books/validation/23.txt", "vocab_padded": int(logits.shape[-1]),
            "mean_nll": nll.mean().item(), "max_abs_logit": logits.abs().max().item()}


def main(out_dir) -> dict:
    import transformers
    out = pathlib.Path(out_dir)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    _setup_torch()
    try:
        import mamba_ssm  # noqa: F401
        raise RuntimeError("oracle_model: mamba_ssm is importable; HF would not take its pure-PyTorch path")
    except ImportError:
        pass
    models = {spec["name"]: _tiny_model(spec, out, seed=1000 + i) for i, spec in enumerate(MODELS)}
    organisms = {arch: _organism(arch, out) for arch in ("mamba1", "mamba2")}
    return {
        "version": VERSION,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "dtype": "float32",
        "hf_paths": {"mamba1": "mamba_selective_scan sequential loop (use_associative_scan is compile-only)",
                     "mamba2": f"mamba2_chunk_scan (chunked SSD in PyTorch), chunk_size {CHUNK}"},
        "patches": {
            "dt_scale": "F.softplus in the HF modeling module -> s * softplus (Mamba2: s * clamp(softplus), HF "
                        "clamp set to (0, inf) during the run); s = 1 reproduces HF bit for bit",
            "mamba2_gated_norm": "transformers 5.17 MambaRMSNormGated normalises over all of d_inner, ignoring "
                                 "n_groups; replaced by a per-group RMS norm (mamba_ssm RMSNormGated, "
                                 "group_size = d_inner / n_groups); the unpatched output is logits_hf_ungrouped",
        },
        "models": models,
        "organisms": organisms,
    }
