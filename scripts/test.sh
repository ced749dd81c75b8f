#!/usr/bin/env bash
# The test command: set-up (idempotent), build, then the whole ctest suite (oracle fixtures first).
# Tests over the full shared corpus run too when ../shared is present beside the clone, and skip otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh "$@"
(cd "${MX_BUILD_DIR:-build}" && ctest --output-on-failure --timeout 1800 -j "${MX_TEST_JOBS:-2}")
# Then the sanitizer job: the input-facing unit tests under ASan + UBSan, and 30 s of each libFuzzer target
# (scripts/sanitize.sh; MX_SANITIZE=0 skips it). A sanitizer report or a fuzzer crash fails the script.
if [ "${MX_SANITIZE:-1}" != 0 ]; then
  bash scripts/sanitize.sh
fi
