#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian 12 machine (2 cores, no GPU):
# Debian -dev packages for the C++ dependencies and a project-local Python virtual environment (.venv)
# holding torch (LibTorch for the build) and the test oracles (transformers, tokenizers, safetensors).
# Idempotent: a second run checks and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential cmake ninja-build ccache pkg-config
              libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libgtest-dev
              libutf8proc-dev libpcre2-dev libssl-dev
              clang libclang-rt-14-dev    # clang + libFuzzer / sanitizer runtimes: tests/fuzz (scripts/fuzz.sh)
              libcairo2-dev fonts-dejavu-core)   # `report`: PNG figures (optional in CMake), their font
# Pinned to what the GPU machine has (torch 2.11, transformers 5.17) so parity numbers compare.
PY_PACKAGES=(torch==2.11.0 transformers==5.17.0 tokenizers safetensors numpy)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=".venv/.mambaextend-setup"
want="$(printf '%s\n' "${PY_PACKAGES[@]}")"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: preparing the Python environment .venv (torch, transformers, tokenizers, safetensors)" >&2
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q "${PY_PACKAGES[@]}"
  printf '%s' "$want" > "$stamp"
fi
