#!/usr/bin/env bash
# The main job: set up (packages, release build, default models), then generate with the
# default small model to show the engine working end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release
target/release/rightsize models
target/release/rightsize run smollm2-135m --temperature 0 --max-tokens 64 \
  "In two sentences: why run small language models in production?"
