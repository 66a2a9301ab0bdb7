#!/usr/bin/env bash
# Set up a fresh Debian machine for rightsize, idempotently:
#   1. system packages the build needs (cmake, libclang-dev for llama.cpp's bindings),
#   2. build the `rightsize` binary (profile: release, or dev for the test suite),
#   3. pull the default models into the cache (~/.cache/rightsize, or $RIGHTSIZE_CACHE),
#      verifying sha256; files already verified are not downloaded again,
#   4. pull the BBC News corpus and build the bbc-topic task's data from it
#      (tasks/data/bbc-topic.*, git-ignored; rebuilt only when the corpus or the builder changes).
#      For the main job (release) this step may fail: the server then lists bbc-topic as
#      unavailable and serves the rest; the test suite (dev) needs it.
#   5. dev only: a Python virtual environment with the official OpenAI client in target/py
#      (stock Debian's python refuses `pip install` into the system, PEP 668); the tests use
#      it through $RIGHTSIZE_PYTHON (scripts/test.sh) or at that place.
# Usage: scripts/setup.sh [release|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v c++ >/dev/null 2>&1 || need+=(build-essential)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
if [ "$profile" != "release" ]; then
  # venv with pip (Debian splits them out of python3).
  python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv python3-pip)
fi
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
  # The test command's lint gate (scripts/test.sh) needs rustfmt and clippy.
  if command -v rustup >/dev/null 2>&1; then rustup component add rustfmt clippy >/dev/null 2>&1 || true; fi
  cargo build --locked --workspace --all-targets
  bin=target/debug/rightsize
fi

"$bin" pull --default
# The BBC text is research use only and never committed: each machine builds it (a no-op when up to date).
if ! { "$bin" pull bbc-news && "$bin" data bbc-topic; }; then
  if [ "$profile" = "release" ]; then
    echo "setup: warning: could not build the bbc-topic data; the server will list that task as unavailable" >&2
  else
    echo "setup: the test suite needs the bbc-topic data (rightsize pull bbc-news; rightsize data bbc-topic)" >&2
    exit 1
  fi
fi

if [ "$profile" != "release" ]; then
  # The API conformance and README tests drive the server with the official OpenAI Python
  # client, installed into a virtual environment (git-ignored under target/).
  venv=target/py
  if ! "$venv/bin/python" -c "import openai" >/dev/null 2>&1; then
    echo "setup: installing the openai client into $venv"
    python3 -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "openai>=1.40"
  fi
fi
echo "setup: ready ($bin)"
