#!/usr/bin/env bash
# End-to-end ingestion (parse, type, validate, profile, write Parquet) of a 1,000,000 x 20 CSV
# (about 370 MB) and of one 4x that size: ours through the real service (`mlops up`, the file
# read by the server under ingestion.import_root), pandas and polars on the same files, in one
# run. Results: docs/BENCHMARKS.md.
#
#   python3 -m venv .venv-sk && .venv-sk/bin/pip install numpy pandas pyarrow polars
#   PY_VENV=.venv-sk scripts/bench/ingest.sh [rows, default 1000000] [repeats, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
rows="${1:-1000000}"
repeats="${2:-3}"
venv="$(cd "${PY_VENV:-.venv-sk}" && pwd)"
work="${BENCH_DIR:-$(mktemp -d)}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; [ -z "${BENCH_DIR:-}" ] && rm -rf "$work"' EXIT

cargo build --release -p mlops-cli --bin mlops
bin=target/x86_64-unknown-linux-gnu/release/mlops
. scripts/bench/stack.sh
mkdir -p "$work/imports"
[ -f "$work/imports/x1.csv" ] || "$venv/bin/python" scripts/bench/ingest_data.py "$work/imports/x1.csv" "$rows"
[ -f "$work/imports/x4.csv" ] || "$venv/bin/python" scripts/bench/ingest_data.py "$work/imports/x4.csv" "$((rows * 4))"

results="$work/results.jsonl"
: >"$results"
ours() { # file: a fresh stack per run, so its peak RSS is this ingest's
  local data="$work/data-$RANDOM"
  start_stack "$bin" "$data" "$work/ours.log"
  local pid=$stack_pid
  local before after
  before=$(date +%s.%N)
  "$bin" data ingest --uri "$1" --name bench >/dev/null
  after=$(date +%s.%N)
  local rss
  rss=$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
  python3 -c "import json,os,sys; s=float(sys.argv[2])-float(sys.argv[1]); mb=os.path.getsize(sys.argv[3])/1e6; print(json.dumps({'impl':'ours','csv_mb':round(mb,1),'seconds':round(s,3),'mb_per_s':round(mb/s,1),'peak_rss_mb':round(float(sys.argv[4]),1)}))" \
    "$before" "$after" "$work/imports/$1" "$rss" | tee -a "$results"
}
for _ in $(seq "$repeats"); do
  for file in x1.csv x4.csv; do
    ours "$file"
    for tool in pandas polars; do
      "$venv/bin/python" scripts/bench/ingest_peers.py "$tool" "$work/imports/$file" "$work/out.parquet" | tee -a "$results"
    done
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in runs:
    groups.setdefault((r["impl"], r["csv_mb"]), []).append(r)
print("\n| impl | CSV MB | median s | MB/s | peak RSS MB |\n|---|---:|---:|---:|---:|")
for (impl, mb), rs in sorted(groups.items(), key=lambda g: (g[0][1], g[0][0])):
    s = statistics.median(r["seconds"] for r in rs)
    print(f"| {impl} | {mb} | {s:.2f} | {mb / s:.1f} | {max(r['peak_rss_mb'] for r in rs):.0f} |")
PY
