#!/usr/bin/env bash
# Configures and builds mambaextend into build/ (or $MX_BUILD_DIR). Extra arguments go to cmake's configure
# step (e.g. -DMAMBAEXTEND_CUDA=OFF). Needs scripts/setup.sh to have run, or, on a machine where nothing can be
# installed (the GPU box), a python3 with torch and the carried .carry/deps (scripts/device_deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${MX_BUILD_DIR:-build}"
PY="${MX_PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
case "$PY" in /*) ;; */*) PY="$PWD/$PY" ;; *) PY="$(command -v "$PY")" ;; esac
TORCH_PREFIX="$($PY -c 'import torch; print(torch.utils.cmake_prefix_path)')"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
extra=()
if [ -d .carry/deps/usr ] && ! pkg-config --exists libutf8proc 2>/dev/null; then
  deps="$PWD/.carry/deps/usr"
  export PKG_CONFIG_PATH="$deps/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  extra+=(-DOPENSSL_ROOT_DIR="$deps" -DOPENSSL_INCLUDE_DIR="$deps/include"
          -DCMAKE_INCLUDE_PATH="$deps/include/x86_64-linux-gnu"
          -DCMAKE_CXX_FLAGS="-isystem $deps/include/x86_64-linux-gnu"
          -DCMAKE_BUILD_RPATH="$deps/lib/x86_64-linux-gnu")
fi
if [ ! -f "$BUILD_DIR/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
        -DMX_PYTHON="$PY" "${extra[@]}" "$@" >/dev/null
fi
cmake --build "$BUILD_DIR" --parallel "${MX_JOBS:-$(nproc)}"
