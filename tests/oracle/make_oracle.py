#!/usr/bin/env python3
"""Generates the test oracle fixtures: runs main(out_dir) of every tests/oracle/oracle_*.py module.

Each module writes its fixtures under out_dir/<module suffix>/ and a manifest.json with a version, so a
C++ test finds them at $MX_FIXTURES/<suffix>/. A module whose manifest already matches its version (and the
hash of its own source) is skipped, so re-running ctest does not regenerate anything.
Run by ctest as the `make_oracle` fixture before the C++ tests; needs the project's .venv (scripts/setup.sh).
"""
import argparse
import hashlib
import importlib.util
import json
import pathlib
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--only", default=None, help="run only oracle_<ONLY>.py")
    args = ap.parse_args()
    here = pathlib.Path(__file__).resolve().parent
    args.out.mkdir(parents=True, exist_ok=True)
    for src in sorted(here.glob("oracle_*.py")):
        suffix = src.stem[len("oracle_"):]
        if args.only and suffix != args.only:
            continue
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        dest = args.out / suffix
        manifest = dest / "manifest.json"
        if manifest.exists():
            try:
                if json.loads(manifest.read_text()).get("source_sha256") == digest:
                    print(f"oracle {suffix}: up to date")
                    continue
            except json.JSONDecodeError:
                pass
        dest.mkdir(parents=True, exist_ok=True)
        spec = importlib.util.spec_from_file_location(src.stem, src)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        t0 = time.time()
        info = mod.main(dest) or {}
        info.update({"module": src.name, "source_sha256": digest})
        manifest.write_text(json.dumps(info, indent=1))
        print(f"oracle {suffix}: written in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
