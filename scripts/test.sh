#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite with CTest.
#
# Environment: ANKANET_BUILD_DIR (default build), ANKANET_BUILD_TYPE (default RelWithDebInfo),
# ANKANET_SANITIZE=ON for ASan+UBSan, ANKANET_BUILD_BENCH (default ON),
# CTEST_PARALLEL_LEVEL (default: the number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
build_dir="${ANKANET_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${ANKANET_BUILD_TYPE:-RelWithDebInfo}" \
      -DANKANET_BUILD_TESTS=ON -DANKANET_BUILD_EXAMPLES=ON -DANKANET_BUILD_BENCH="${ANKANET_BUILD_BENCH:-ON}" \
      -DANKANET_SANITIZE="${ANKANET_SANITIZE:-OFF}"
cmake --build "$build_dir"
ctest --test-dir "$build_dir" --output-on-failure -j "${CTEST_PARALLEL_LEVEL:-$(nproc)}"
