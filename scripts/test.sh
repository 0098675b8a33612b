#!/usr/bin/env bash
# Builds everything with warnings as errors and runs every test (unit + integration) with CTest.
# Usage: scripts/test.sh [ctest arguments...]   e.g. scripts/test.sh -L unit
# Environment: BUILD_DIR (default build), PM_SANITIZE=ON for an ASan+UBSan build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DPM_WERROR=ON -DPM_SANITIZE="${PM_SANITIZE:-OFF}" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
