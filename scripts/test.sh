#!/usr/bin/env bash
# The test command: set-up (idempotent), build, then the whole ctest suite (oracle fixtures first).
# Tests over the full shared corpus run too when ../shared is present beside the clone, and skip otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh "$@"
cd "${MX_BUILD_DIR:-build}"
ctest --output-on-failure --timeout 1800 -j "${MX_TEST_JOBS:-2}"
