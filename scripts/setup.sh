#!/usr/bin/env bash
# Set up a fresh Debian machine for rightsize, idempotently:
#   1. system packages the build needs (cmake, libclang-dev for llama.cpp's bindings),
#   2. build the `rightsize` binary (profile: release, or dev for the test suite),
#   3. pull the default models into the cache (~/.cache/rightsize, or $RIGHTSIZE_CACHE),
#      verifying sha256; files already verified are not downloaded again,
#   4. pull the BBC News corpus and build the bbc-topic task's data from it
#      (tasks/data/bbc-topic.*, git-ignored; rebuilt only when the corpus or the builder changes).
# Usage: scripts/setup.sh [release|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v c++ >/dev/null 2>&1 || need+=(build-essential)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "$profile" = "release" ]; then
  cargo build --locked --release -p rightsize
  bin=target/release/rightsize
else
  # Build every target the test suite will run, with the test suite's feature resolution:
  # building only `-p rightsize` here would resolve features differently and make
  # `cargo test` compile llama.cpp a second time.
  cargo build --locked --workspace --all-targets
  bin=target/debug/rightsize
fi

"$bin" pull --default
# The BBC text is research use only and never committed: each machine builds it (a no-op when up to date).
"$bin" pull bbc-news
"$bin" data bbc-topic

if [ "$profile" != "release" ]; then
  # The API conformance test drives the server with the official OpenAI Python client.
  python3 -c "import openai" 2>/dev/null || python3 -m pip install --quiet "openai>=1.40"
fi
echo "setup: ready ($bin)"
