#!/usr/bin/env bash
# Fit time on 1,000,000 x 100 dense f64, ours vs scikit-learn on the same files in one run, and
# the streaming (sufficient-statistics) ridge fit's peak RSS at 1x and 4x that data.
# Results: docs/BENCHMARKS.md.
#
#   python3 -m venv .venv-sk && .venv-sk/bin/pip install scikit-learn==1.9.1
#   SKLEARN_VENV=.venv-sk scripts/bench/train.sh [rows, default 1000000] [repeats, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
rows="${1:-1000000}"
repeats="${2:-3}"
features=100
venv="$(cd "${SKLEARN_VENV:-.venv-sk}" && pwd)"
work="${BENCH_DIR:-$(mktemp -d)}"
trap '[ -z "${BENCH_DIR:-}" ] && rm -rf "$work"' EXIT

cargo build --release -p mlops-ml --example fit_bench
bench=target/x86_64-unknown-linux-gnu/release/examples/fit_bench
[ -f "$work/x1/X.f64" ] || "$bench" generate "$work/x1" "$rows" "$features"
[ -f "$work/x4/X.f64" ] || "$bench" generate "$work/x4" "$((rows * 4))" "$features"

results="$work/results.jsonl"
: >"$results"
for _ in $(seq "$repeats"); do
  for model in ols_svd ols_normal ridge logistic; do
    "$bench" fit "$work/x1" "$rows" "$features" "$model" | tee -a "$results"
  done
  for model in ols ridge logistic; do
    "$venv/bin/python" scripts/bench/train_sklearn.py "$work/x1" "$rows" "$features" "$model" | tee -a "$results"
  done
  "$bench" stream "$work/x1" "$rows" "$features" 65536 | tee -a "$results"
  "$bench" stream "$work/x4" "$((rows * 4))" "$features" 65536 | tee -a "$results"
done
python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in runs:
    groups.setdefault((r["impl"], r["model"], r["rows"]), []).append(r)
print(f"\n| impl | model | rows | median s | loss | peak RSS MB |\n|---|---|---|---|---|---|")
for (impl, model, rows), rs in groups.items():
    loss = next(v for k, v in rs[0].items() if k not in ("impl", "model", "rows", "seconds", "peak_rss_mb"))
    print(f"| {impl} | {model} | {rows:,} | {statistics.median(r['seconds'] for r in rs):.3f} | {loss:.6f} | {max(r['peak_rss_mb'] for r in rs):.0f} |")
PY
