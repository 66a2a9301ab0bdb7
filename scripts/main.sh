#!/usr/bin/env bash
# The main job: set up (packages, release build, default models), then serve the default mesh
# (SmolLM2-135M, Qwen2.5-0.5B, Qwen2.5-1.5B, all-MiniLM-L6-v2) with the embedded SQLite store
# on http://127.0.0.1:8080. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release
target/release/rightsize models
exec target/release/rightsize serve "$@"
