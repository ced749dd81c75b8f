#!/usr/bin/env python3
"""Tokenizer throughput: mambaextend's native tokenizer against Hugging Face `tokenizers`, same books, same machine.

Measures MB/s (10^6 UTF-8 bytes per second of the tokenization pass; files already in memory and the tokenizer
already loaded, for both) for:
  HF tokenizers  Tokenizer.encode, one document after another (single-threaded)
  HF tokenizers  Tokenizer.encode_batch over all documents (Rayon, all cores)
  mambaextend    `tokenize --no-cache --threads 1` and `--threads 0` (all cores; one document per thread at a
                 time), the rate it reports for its tokenization pass; process start, tokenizer load and file
                 reading are excluded there too (the end-to-end wall time is in the JSON).
Each measurement is the best of --repeat runs (the machine may be shared). The token totals of both engines
are checked to be equal. Prints a table; --out writes JSON.

  .venv/bin/python scripts/bench_tokenizer.py --cli build/mambaextend --out results/bench_tokenizer.json
"""
import argparse
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def default_books():
    shared = ROOT.parent / "shared" / "data" / "books"
    return shared if shared.is_dir() else ROOT / "assets" / "books"


def book_files(root):
    files = sorted(root.glob("*.txt")) + sorted(root.glob("*/*.txt"))
    if not files:
        sys.exit(f"no .txt books under {root}")
    return files


def best_of(repeat, fn):
    best = None
    for _ in range(repeat):
        r = fn()
        if best is None or r["seconds"] < best["seconds"]:
            best = r
    return best


def run_hf(tokenizer_path, texts, batch):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tokenizer_path))

    def once():
        t0 = time.perf_counter()
        if batch:
            n = sum(len(e.ids) for e in tok.encode_batch(texts))
        else:
            n = sum(len(tok.encode(t).ids) for t in texts)
        return {"seconds": time.perf_counter() - t0, "tokens": n}
    return once


LINE = re.compile(r"tokenized (\d+) documents .*?, (\d+) tokens, ([\d.]+) MB in ([\d.]+) s: ([\d.]+) MB/s, (\d+) threads")


def run_ours(cli, tokenizer_path, data_dir, threads):
    def once():
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            p = subprocess.run([str(cli), "tokenize", "--tokenizer", str(tokenizer_path), "--data", str(data_dir),
                                "--out", out, "--no-cache", "--threads", str(threads)],
                               capture_output=True, text=True)
            wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"{cli} tokenize failed ({p.returncode}): {p.stderr.strip()}")
        m = LINE.search(p.stdout)
        if not m:
            sys.exit(f"cannot parse the summary line of {cli} tokenize: {p.stdout!r}")
        return {"seconds": float(m.group(4)), "tokens": int(m.group(2)), "threads": int(m.group(6)),
                "process_wall_seconds": wall}
    return once


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--books", type=pathlib.Path, default=default_books(),
                    help="directory of .txt books, or of split folders of them (default: ../shared/data/books, "
                         "else assets/books)")
    ap.add_argument("--tokenizer", type=pathlib.Path,
                    default=ROOT / "assets" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json")
    ap.add_argument("--cli", type=pathlib.Path, default=pathlib.Path(os.environ.get("MX_CLI", ROOT / "build" / "mambaextend")))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=pathlib.Path, help="write the results as JSON here")
    args = ap.parse_args()

    files = book_files(args.books)
    texts = [f.read_text(encoding="utf-8") for f in files]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory() as flat:  # the CLI reads one directory: link every book into one
        for i, f in enumerate(files):
            os.symlink(f.resolve(), pathlib.Path(flat) / f"{i:04d}_{f.parent.name}_{f.name}")
        runs = [
            ("HF tokenizers encode", 1, run_hf(args.tokenizer, texts, batch=False)),
            ("HF tokenizers encode_batch", cores, run_hf(args.tokenizer, texts, batch=True)),
            ("mambaextend tokenize", 1, run_ours(args.cli, args.tokenizer, flat, 1)),
            ("mambaextend tokenize", cores, run_ours(args.cli, args.tokenizer, flat, 0)),
        ]
        results = []
        for name, threads, fn in runs:
            r = best_of(args.repeat, fn)
            r.update({"engine": name, "threads": r.get("threads", threads), "mb_per_s": nbytes / 1e6 / r["seconds"]})
            results.append(r)

    tokens = {r["tokens"] for r in results}
    report = {
        "books": {"root": str(args.books), "files": len(files), "bytes": nbytes},
        "machine": {"cores": cores, "platform": platform.platform(), "load_average": os.getloadavg()},
        "tokenizer": str(args.tokenizer), "repeat": args.repeat, "results": results,
        "tokens_equal": len(tokens) == 1,
    }
    hf1 = results[0]["mb_per_s"]
    print(f"books: {len(files)} files, {nbytes / 1e6:.2f} MB ({args.books}); {cores} cores; "
          f"load average {os.getloadavg()[0]:.1f}; best of {args.repeat}")
    print(f"{'engine':<28} {'threads':>7} {'MB/s':>9} {'vs HF 1T':>9} {'tokens':>10}")
    for r in results:
        print(f"{r['engine']:<28} {r['threads']:>7} {r['mb_per_s']:>9.2f} {r['mb_per_s'] / hf1:>8.1f}x {r['tokens']:>10}")
    if len(tokens) != 1:
        print(f"TOKEN COUNTS DIFFER: {sorted(tokens)}", file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(args.out)
    return 0 if len(tokens) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
