#!/usr/bin/env bash
# Installs what is missing, builds ankanet's examples and runs the main demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build --target ankanet-demo
exec build/examples/ankanet-demo
