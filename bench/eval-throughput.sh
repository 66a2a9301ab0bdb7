#!/usr/bin/env bash
# Items per second of `rightsize eval` with continuous batching (N items in flight, the
# engine batches them) against a one-at-a-time loop (1 in flight), on the bbc-topic data set
# (200 stories, built by `rightsize data bbc-topic`), one decoder tier at a time.
#
#   bench/eval-throughput.sh [MODEL ...]      # default: smollm2-135m qwen2.5-0.5b
#
# KIND=label (default): the bbc-topic label task (label scoring: prompt prefill + labels, no
# decoding). KIND=generate: the same stories with their headline cut off, and the tier writes
# a headline (text, at most 16 tokens; greedy), so decoding is part of each item.
# RIGHTSIZE (default target/release/rightsize), CONCURRENCY (default 16), DATA override.
# Output: a table on stdout and bench/out/eval-throughput-<date>.txt (git-ignored). The two
# runs of a model are taken back to back; the ratio is what to read on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${RIGHTSIZE:-target/release/rightsize}"
CONC="${CONCURRENCY:-16}"
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(smollm2-135m qwen2.5-0.5b)
DATA="${DATA:-tasks/data/bbc-topic.eval.jsonl}"
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release --workspace --all-targets" >&2; exit 1; }
[ -f "$DATA" ] || { echo "no $DATA: rightsize pull bbc-news && rightsize data bbc-topic" >&2; exit 1; }
mkdir -p bench/out
OUT="bench/out/eval-throughput-${KIND:-label}-$(date -u +%Y%m%dT%H%M%SZ).txt"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ITEMS=$(wc -l < "$DATA")

KIND="${KIND:-label}"

# The shipped task (or its headline-writing variant) with one local tier that always answers.
one_tier_task() {
  local dir="$WORK/$1"
  mkdir -p "$dir/data"
  if [ "$KIND" = generate ]; then
    python3 - "$DATA" > "$dir/data/bbc-topic.eval.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    item = json.loads(line)
    headline, _, body = item["input"]["article"].partition("\n")
    print(json.dumps({"id": item["id"], "input": {"article": body}, "expected": headline, "split": item["split"]}))
PY
    cat > "$dir/bbc-topic.toml" <<'TOML'
name = "bbc-topic"
version = 1
inputs = ["article"]
system = "You are a news editor. You write short headlines."
prompt = "Write a headline for this news story.\n\nStory: {{ article }}"
dataset = "data/bbc-topic.eval.jsonl"
quality_bar = 0.5
[output]
kind = "text"
max_tokens = 16
TOML
  else
    cp "$DATA" "$dir/data/bbc-topic.eval.jsonl"
    sed '/^\[\[ladder\]\]/,$d; /^examples *=/d' tasks/bbc-topic.toml > "$dir/bbc-topic.toml"
  fi
  printf '[[ladder]]\nkind = "local"\nmodel = "%s"\nthreshold = 0.0\n' "$1" >> "$dir/bbc-topic.toml"
  echo "$dir"
}

# Wall seconds of one eval run.
run_eval() {
  local dir=$1 conc=$2 out="$WORK/out-$(basename "$1")-$2" t0 t1
  t0=$(date +%s.%N)
  "$BIN" eval bbc-topic --tasks-dir "$dir" --concurrency "$conc" --no-router \
    --out "$out" --store "$WORK/store.db" > "$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.1f}')"
}

{
  echo "# eval throughput ($KIND), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $ITEMS items, $BIN"
  printf '%-14s %12s %12s %12s %12s %8s  %s\n' model "1 in flight" "items/s" "$CONC in flight" "items/s" ratio "load avg (before each)"
  for m in "${MODELS[@]}"; do
    dir=$(one_tier_task "$m")
    l1=$(cut -d' ' -f1 /proc/loadavg); s1=$(run_eval "$dir" 1)
    l2=$(cut -d' ' -f1 /proc/loadavg); s2=$(run_eval "$dir" "$CONC")
    python3 -c "
n=$ITEMS; a=$s1; b=$s2
print(f'{\"$m\":<14} {a:>10.1f} s {n/a:>12.2f} {b:>10.1f} s {n/b:>12.2f} {a/b:>7.2f}x  $l1 / $l2')"
  done
} | tee "$OUT"
