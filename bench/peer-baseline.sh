#!/usr/bin/env bash
# Measure the llama.cpp peer's baselines on this machine (the denominators of
# rightsize's ratios): llama-bench prefill/decode on small models and a
# llama-server concurrent-load run through the `bench` crate's load generator.
#
#   bench/build-peer.sh            # once
#   bench/peer-baseline.sh [THREADS]
#
# Output goes to stdout and bench/out/peer-baseline-<date>.txt (bench/out is git-ignored).
# Waits (up to QUIET_WAIT_S, default 600) for the CPU to be idle first: numbers
# taken while other builds run are meaningless.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-$(nproc)}"
CACHE="${RIGHTSIZE_CACHE:-$HOME/.cache/rightsize}"
MODELS="$CACHE/models"
OUTDIR=bench/out
mkdir -p "$OUTDIR"
OUT="$OUTDIR/peer-baseline-$(date -u +%Y%m%dT%H%M%SZ).txt"

# Percentage of idle CPU over the next 3 s.
idle_pct() {
  local a b
  read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat
  sleep 3
  read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
  a=$(( (u2+n2+s2+i2+w2+q2+sq2+st2) - (u1+n1+s1+i1+w1+q1+sq1+st1) ))
  b=$(( (i2+w2) - (i1+w1) ))
  echo $(( a > 0 ? 100 * b / a : 100 ))
}
wait_quiet() {
  local deadline=$(( $(date +%s) + ${QUIET_WAIT_S:-600} )) idle
  while :; do
    idle=$(idle_pct)
    (( idle >= 85 )) && return 0
    if (( $(date +%s) >= deadline )); then
      echo "WARNING: CPU only ${idle}% idle; measuring anyway (numbers are noisy)" >&2; return 0
    fi
    echo "waiting for an idle CPU (${idle}% idle)..." >&2
    sleep 10
  done
}

cargo build -q -p bench --example peer_baseline
EX="${CARGO_TARGET_DIR:-target}/debug/examples/peer_baseline"

{
  echo "# peer baseline $(date -u +%FT%TZ), $(nproc) cores, -t $THREADS"
  cat "$CACHE/peer/bin/VERSION" 2>/dev/null | sed 's/^/# /'
  for m in smollm2-135m qwen2.5-0.5b; do
    f="$MODELS/$m/model.gguf"
    [[ -f "$f" ]] || { echo "skip $m: no $f"; continue; }
    wait_quiet; "$EX" bench "$f" "$THREADS" 128 64 3 | grep -v "^[[{]"
    wait_quiet; "$EX" bench "$f" "$THREADS" 512 0 3 | grep -v "^[[{]"
  done
  f="$MODELS/qwen2.5-0.5b/model.gguf"
  if [[ -f "$f" ]]; then
    wait_quiet; "$EX" load "$f" "$THREADS" 16 16 2 64 4096 | grep -v "^[[{]"
  fi
} 2>&1 | tee "$OUT"
echo "saved $OUT" >&2
