#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets (tests/fuzz/) into OUT/<target>/ (default build-fuzz/seeds).

Seeds come from ../shared (models, tokenizer, books) when it sits beside the clone, else from assets/. Nothing
here is committed: the seeds are regenerated on every run (small, deterministic).
Needs only the Python standard library plus numpy-free struct packing (no torch, no safetensors)."""
import argparse
import json
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def source_dir() -> Path:
    shared = ROOT.parent / "shared"
    if (shared / "models").is_dir() and (shared / "data").is_dir():
        return shared
    return ROOT / "assets"


def layout(src: Path):
    models = sorted(p for p in (src / "models").iterdir() if (p / "config.json").is_file())
    tok_root = src / "data" / "tokenizers" if (src / "data").is_dir() else src / "tokenizers"
    books_root = src / "data" / "books" if (src / "data").is_dir() else src / "books"
    return models, sorted(tok_root.glob("*/tokenizer.json")), sorted(books_root.glob("*/*.txt"))


def write(d: Path, name: str, data: bytes):
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


DT_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}


def safetensors_file(tensors, metadata=None) -> bytes:
    """tensors: [(name, dtype, shape)] -> a valid safetensors image with zero data."""
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dt, shape in tensors:
        n = DT_SIZE[dt]
        for s in shape:
            n *= s
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + bytes(off)


def seeds_safetensors(models, out):
    d = out / "fuzz_safetensors_header"
    for m in models:
        for f in sorted(m.glob("*.safetensors")):
            raw = f.read_bytes()
            n = struct.unpack("<Q", raw[:8])[0]
            header = json.loads(raw[8:8 + n])
            # The real header, shrunk to tiny shapes so the seed stays small but keeps the real names and dtypes.
            small = [(k, v["dtype"], [min(s, 3) for s in v["shape"]]) for k, v in header.items() if k != "__metadata__"]
            write(d, f"{m.name}-{f.stem}-small.safetensors", safetensors_file(small[:24], header.get("__metadata__")))
            write(d, f"{m.name}-{f.stem}-header-only.bin", raw[:8 + n])  # truncated data region: refused
    for dt in DT_SIZE:
        write(d, f"one-{dt}.safetensors", safetensors_file([("backbone.embeddings.weight", dt, [2, 3])]))
    write(d, "empty-object.safetensors", safetensors_file([]))
    write(d, "scalar-and-empty.safetensors", safetensors_file([("a", "F32", []), ("b", "F16", [0, 4])]))


def seeds_index(models, out):
    d = out / "fuzz_safetensors_index"
    for m in models:
        idx = m / "model.safetensors.index.json"
        if idx.is_file():
            text = idx.read_bytes()
            write(d, f"{m.name}.json", text)
            j = json.loads(text)
            items = list(j["weight_map"].items())[:6]
            write(d, f"{m.name}-short.json", json.dumps({"metadata": {"total_size": 1}, "weight_map": dict(items)}).encode())
    write(d, "traversal.json", b'{"weight_map": {"a": "../x.safetensors", "b": "/etc/passwd", "c": "sub/ok.safetensors"}}')


def pickle_program() -> bytes:
    """A protocol-2 pickle of an OrderedDict of two tensors, as torch.save writes it (storages 0 and 1)."""
    p = bytearray(b"\x80\x02")
    p += b"ccollections\nOrderedDict\nq\x00)Rq\x01("
    for i, (name, shape) in enumerate([("embedding.weight", (4, 2)), ("norm_f.weight", (4,))]):
        p += b"X" + struct.pack("<I", len(name)) + name.encode()
        p += b"ctorch._utils\n_rebuild_tensor_v2\n("
        p += b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX" + struct.pack("<I", 1) + str(i).encode()
        p += b"X\x03\x00\x00\x00cpuK" + bytes([16]) + b"tQ"  # persistent id -> BINPERSID
        p += b"K\x00"  # storage offset
        p += b"(" + b"".join(b"K" + bytes([s]) for s in shape) + b"t"
        strides = [1] * len(shape)
        for k in range(len(shape) - 2, -1, -1):
            strides[k] = strides[k + 1] * shape[k + 1]
        p += b"(" + b"".join(b"K" + bytes([s]) for s in strides) + b"t"
        p += b"\x89ccollections\nOrderedDict\n)RtR"
    p += b"u."
    return bytes(p)


def seeds_pickle(out):
    d = out / "fuzz_pickle"
    prog = pickle_program()
    write(d, "state-dict.pkl", b"\x00" + prog)
    write(d, "evil-global.pkl", b"\x00\x80\x02cos\nsystem\nX\x02\x00\x00\x00idq\x00\x85R.")
    write(d, "evil-builtins.pkl", b"\x00\x80\x02c__builtin__\neval\n.")
    write(d, "empty-dict.pkl", b"\x00\x80\x02}q\x00.")
    # A whole torch.save-style zip (odd first byte: the harness reads it as the file).
    import zipfile, io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", prog)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", bytes(32))
        z.writestr("archive/data/1", bytes(16))
        z.writestr("archive/version", "3\n")
    write(d, "torch-save.zip", b"\x01" + buf.getvalue())


def seeds_config(models, out):
    d = out / "fuzz_config_json"
    for m in models:
        write(d, f"{m.name}.json", (m / "config.json").read_bytes())
    write(d, "state-spaces-mamba1.json", json.dumps({"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {},
                                                     "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
                                                     "pad_vocab_size_multiple": 8}).encode())
    write(d, "state-spaces-mamba2.json", json.dumps({"d_model": 768, "d_intermediate": 0, "n_layer": 24,
                                                     "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"},
                                                     "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True,
                                                     "tie_embeddings": True, "pad_vocab_size_multiple": 16}).encode())


def seeds_tokenizer(tokenizers, out):
    d = out / "fuzz_tokenizer_json"
    for t in tokenizers:
        j = json.loads(t.read_bytes())
        vocab = j["model"]["vocab"]
        merges = j["model"]["merges"]
        for n_merges in (0, 40, 400):
            keep = {}
            for tok, i in vocab.items():
                if i < 256:
                    keep[tok] = i
            used = []
            for mg in merges[:n_merges]:
                a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
                if a in keep and b in keep and (a + b) in vocab:
                    keep[a + b] = vocab[a + b]
                    used.append(mg)
            small = dict(j)
            small["model"] = dict(j["model"], vocab=keep, merges=used)
            small["added_tokens"] = j.get("added_tokens", [])[:4]
            write(d, f"{t.parent.name}-{n_merges}.json", json.dumps(small, ensure_ascii=False).encode())


def seeds_factors(out):
    d = out / "fuzz_factors"
    for first, (arch, w) in ((b"\x00", ("mamba1", 256)), (b"\x01", ("mamba2", 4))):
        v1 = {"format": "mambaextend.factors/v1",
              "model": {"arch": arch, "n_layer": 8, "d_inner": 256, "nheads": 4 if arch == "mamba2" else None,
                        "config_sha256": "0123"},
              "method": "zo", "granularity": "layer", "scales": [[1.0 + l / 10] for l in range(8)]}
        write(d, f"{arch}-layer.json", first + json.dumps(v1).encode())
        v1["scales"] = [[0.5 + c / w for c in range(w)] for _ in range(8)]
        v1["granularity"] = "channel"
        write(d, f"{arch}-channel.json", first + json.dumps(v1).encode())
        write(d, f"{arch}-bare.json", first + json.dumps([1.5] * 8).encode())
    write(d, "wrong-length.json", b"\x00[1.0, 2.0]")
    write(d, "negative.json", b"\x00[1,1,1,1,1,1,1,-1]")


def seeds_jsonl(books, out):
    d = out / "fuzz_jsonl"
    lines = []
    for b in books[:8]:
        text = b.read_bytes()[:300].decode("utf-8", errors="ignore")
        lines.append(json.dumps({"text": text, "id": b.stem}, ensure_ascii=False))
    write(d, "books.jsonl", ("\n".join(lines) + "\n").encode())
    write(d, "ascii-escapes.jsonl", ("\n".join(json.dumps({"text": l[:80]}) for l in lines[:3]) + "\r\n\n").encode())
    write(d, "one.jsonl", b'{"text": "It was a dark and stormy night."}')


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "build-fuzz" / "seeds"))
    args = ap.parse_args()
    out = Path(args.out)
    src = source_dir()
    models, tokenizers, books = layout(src)
    if not models or not tokenizers or not books:
        sys.exit(f"fuzz_seeds: {src} lacks models, tokenizers or books")
    seeds_safetensors(models, out)
    seeds_index(models, out)
    seeds_pickle(out)
    seeds_config(models, out)
    seeds_tokenizer(tokenizers, out)
    seeds_factors(out)
    seeds_jsonl(books, out)
    for d in sorted(out.iterdir()):
        print(f"fuzz_seeds: {d.name}: {len(list(d.iterdir()))} seeds from {src}", file=sys.stderr)


if __name__ == "__main__":
    main()
