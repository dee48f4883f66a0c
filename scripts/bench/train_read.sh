#!/usr/bin/env bash
# A training job on the ingestion benchmark's 1,000,000 x 20 version and on one 4x that size,
# through the real service (`mlops up`): the job's wall time and the server's peak RSS while it
# reads the version and fits (the peak is reset after the import, so it is the job's).
# Ordinary least squares on every other column, the two text columns one-hot encoded. In the
# same run, pandas + scikit-learn read the same version's Parquet file and fit the same way
# (scripts/bench/train_read_peer.py). Results: docs/BENCHMARKS.md.
#
#   python3 -m venv .venv-sk && .venv-sk/bin/pip install numpy pandas pyarrow scikit-learn
#   PY_VENV=.venv-sk scripts/bench/train_read.sh [rows, default 1000000] [repeats, default 3]
#
# MLOPS_BIN=path/to/mlops measures another build instead of building this checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."
rows="${1:-1000000}"
repeats="${2:-3}"
venv="$(cd "${PY_VENV:-.venv-sk}" && pwd)"
work="${BENCH_DIR:-$(mktemp -d)}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; [ -z "${BENCH_DIR:-}" ] && rm -rf "$work"' EXIT

bin="${MLOPS_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release -p mlops-cli --bin mlops
  bin=target/x86_64-unknown-linux-gnu/release/mlops
fi
mkdir -p "$work/imports"
[ -f "$work/imports/x1.csv" ] || "$venv/bin/python" scripts/bench/ingest_data.py "$work/imports/x1.csv" "$rows"
[ -f "$work/imports/x4.csv" ] || "$venv/bin/python" scripts/bench/ingest_data.py "$work/imports/x4.csv" "$((rows * 4))"

. scripts/bench/stack.sh
results="$work/train_read.jsonl"
: >"$results"
run() { # file: a fresh stack per run
  local data="$work/data-$RANDOM"
  start_stack "$bin" "$data" "$work/train_read.log"
  local pid=$stack_pid
  "$bin" data ingest --uri "$1" --name bench >/dev/null
  [ -f "$work/${1%.csv}.parquet" ] || "$bin" data download bench --out "$work/${1%.csv}.parquet" >/dev/null
  # Forget the import's peak: from here on, VmHWM is the training job's.
  echo 5 >"/proc/$pid/clear_refs"
  local base before after
  base=$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$pid/status")
  before=$(date +%s.%N)
  "$bin" train --dataset bench --target f0 --model linear --step one_hot --wait >"$work/train_read.out"
  after=$(date +%s.%N)
  local peak
  peak=$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
  python3 -c "import json,sys; print(json.dumps({'impl':'ours','file':sys.argv[1],'seconds':round(float(sys.argv[3])-float(sys.argv[2]),3),'rss_before_mb':round(float(sys.argv[4]),1),'peak_rss_mb':round(float(sys.argv[5]),1)}))" \
    "$1" "$before" "$after" "$base" "$peak" | tee -a "$results"
  grep -E '^ *r2 ' "$work/train_read.out" || true
}
for _ in $(seq "$repeats"); do
  for file in x1.csv x4.csv; do
    run "$file"
    "$venv/bin/python" scripts/bench/train_read_peer.py "$work/${file%.csv}.parquet" f0 |
      python3 -c "import json,sys; r=json.load(sys.stdin); r['file']=sys.argv[1]; print(json.dumps(r))" "$file" | tee -a "$results"
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in runs:
    groups.setdefault((r["file"], r["impl"]), []).append(r)
print("\n| file | impl | median s | median peak RSS MB |\n|---|---|---:|---:|")
for (file, impl), rs in groups.items():
    print(f"| {file} | {impl} | {statistics.median(r['seconds'] for r in rs):.2f} | "
          f"{statistics.median(r['peak_rss_mb'] for r in rs):.0f} |")
PY
