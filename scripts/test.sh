#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up (packages, build, models), then tests.
# Tests use the real models the set-up pulled; nothing here needs a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
cargo test --locked --workspace -- --test-threads 2
