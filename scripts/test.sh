#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite with CTest.
#
# Environment: ANKANET_BUILD_DIR (default build), ANKANET_BUILD_TYPE (default RelWithDebInfo),
# ANKANET_SANITIZE=ON for ASan+UBSan, ANKANET_BUILD_BENCH (default ON),
# CTEST_PARALLEL_LEVEL (default: the number of cores), ANKANET_CTEST_EXCLUDE_LABELS (a label regex
# whose tests are left out; CI's sanitizer pass leaves out the header, modes and consumer checks,
# which compile with their own flags and so run no sanitized code).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
build_dir="${ANKANET_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${ANKANET_BUILD_TYPE:-RelWithDebInfo}" \
      -DANKANET_BUILD_TESTS=ON -DANKANET_BUILD_EXAMPLES=ON -DANKANET_BUILD_BENCH="${ANKANET_BUILD_BENCH:-ON}" \
      -DANKANET_SANITIZE="${ANKANET_SANITIZE:-OFF}"
cmake --build "$build_dir"
exclude=()
if [ -n "${ANKANET_CTEST_EXCLUDE_LABELS:-}" ]; then exclude=(-LE "$ANKANET_CTEST_EXCLUDE_LABELS"); fi
ctest --test-dir "$build_dir" --output-on-failure -j "${CTEST_PARALLEL_LEVEL:-$(nproc)}" "${exclude[@]}"
