#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up (packages, build, models, the OpenAI
# client's virtual environment), the llama.cpp peer, this machine's PostgreSQL, then tests.
# Tests use the real models the set-up pulled; nothing here needs a GPU.
#
# A test whose prerequisite (a model, the peer, Postgres) is missing skips with
# "SKIPPED: <reason>" — or fails under CI=true (.ci/run sets it), since this script provides
# them all. The skips are counted at the end (listed in target/skipped.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
# The lint gate: formatting (rustfmt.toml) and clippy with warnings as errors. The lints the
# tree allows on purpose are named in the workspace Cargo.toml's [workspace.lints.clippy].
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# llama.cpp's llama-server and llama-bench, the benchmark tests' peer: built once (minutes on
# two cores), then kept (PEER_KEEP=1: no rebuild when llama-cpp-python releases a new version).
PEER_KEEP=1 bench/build-peer.sh
# The store's tests also run on Postgres.
STORE_TEST_POSTGRES_URL="$(scripts/postgres.sh)"
export STORE_TEST_POSTGRES_URL
export RIGHTSIZE_PYTHON="$PWD/target/py/bin/python"
export RIGHTSIZE_SKIP_LOG="$PWD/target/skipped.txt"
rm -f "$RIGHTSIZE_SKIP_LOG"
rc=0
cargo test --locked --workspace -- --test-threads 2 || rc=$?
skipped=0
[ -f "$RIGHTSIZE_SKIP_LOG" ] && skipped="$(wc -l <"$RIGHTSIZE_SKIP_LOG")"
if [ "$skipped" -gt 0 ]; then
  echo "test: $skipped test(s) SKIPPED for a missing prerequisite:"
  sed 's/^/  /' "$RIGHTSIZE_SKIP_LOG"
else
  echo "test: 0 tests skipped"
fi
exit "$rc"
