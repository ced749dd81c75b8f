"""Oracle for the perplexity evaluation (tests/unit/test_eval.cpp): per-window NLL from Hugging Face transformers.

For each bundled organism (assets/models/organism-mamba{1,2}-7m, bf16 weights run in fp32, TF32 off, pure-PyTorch
paths: no mamba_ssm) and each bundled validation book (assets/books/validation, file names in byte order,
GPT-NeoX tokenizer from assets/tokenizers, add_special_tokens=False), the pg19 windows at L = 256 and 1024 with
W = 1 and P = 100, computed here by design.md's rule independently of the C++ code:
    stride = max((n - L) // W, 10); window i covers ids[i*stride, i*stride + L) if it fits; with W = 1 only i = 0;
    targets are the last P ids of the window, predicted from positions L-P-1 .. L-2.
Writes windows.json: for every window its book, L, start, the L input ids, and per organism the P per-token NLLs
(-log_softmax of the fp32 logits taken in fp64) and their mean.
Limits: fp32 only, L <= 1024, one window per book (HF Mamba1's sequential scan on CPU is slow).
"""
import json
import pathlib

import torch

VERSION = 1
ROOT = pathlib.Path(__file__).resolve().parents[2]
LENGTHS = [256, 1024]
WINDOWS_PER_DOC = 1
PRED_LEN = 100


def _pg19_windows(n: int, L: int, W: int):
    if n < L:
        return []
    stride = max((n - L) // W, 10)
    return [i * stride for i in range(W) if i * stride + L <= n]


@torch.no_grad()
def main(out_dir) -> dict:
    import transformers
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        import mamba_ssm  # noqa: F401
        raise RuntimeError("oracle_eval: mamba_ssm is importable; HF would not take its pure-PyTorch path")
    except ImportError:
        pass

    out = pathlib.Path(out_dir)
    tok = Tokenizer.from_file(str(ROOT / "assets" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"))
    books = sorted((ROOT / "assets" / "books" / "validation").glob("*.txt"), key=lambda p: p.name.encode())
    windows = []
    for book in books:
        ids = tok.encode(book.read_text(encoding="utf-8"), add_special_tokens=False).ids
        for L in LENGTHS:
            for start in _pg19_windows(len(ids), L, WINDOWS_PER_DOC):
                windows.append({"book": book.name, "length": L, "start": start, "doc_tokens": len(ids),
                                "ids": ids[start:start + L], "nll": {}, "mean_nll": {}})
    for arch in ("mamba1", "mamba2"):
        model = AutoModelForCausalLM.from_pretrained(str(ROOT / "assets" / "models" / f"organism-{arch}-7m"),
                                                     dtype=torch.float32).eval()
        if arch == "mamba2":
            assert model.config.n_groups == 1, "HF's gated norm ignores n_groups: only G = 1 matches mamba_ssm"
        for w in windows:
            L = w["length"]
            x = torch.tensor([w["ids"]], dtype=torch.int64)                     # (1, L)
            logits = model(input_ids=x, use_cache=False).logits[0].float()      # (L, V_pad) fp32
            logp = torch.log_softmax(logits.double(), dim=-1)                   # (L, V_pad)
            pos = torch.arange(L - PRED_LEN - 1, L - 1)
            nll = -logp[pos, x[0, pos + 1]]                                     # (P,)
            w["nll"][arch] = nll.tolist()
            w["mean_nll"][arch] = nll.mean().item()
    (out / "windows.json").write_text(json.dumps({"windows": windows}))
    return {"version": VERSION, "transformers": transformers.__version__, "torch": torch.__version__,
            "dtype": "float32", "lengths": LENGTHS, "windows_per_doc": WINDOWS_PER_DOC, "pred_len": PRED_LEN,
            "books": [b.name for b in books], "windows": len(windows),
            "mean_nll": {f"{w['book']}@{w['length']}": w["mean_nll"] for w in windows}}
