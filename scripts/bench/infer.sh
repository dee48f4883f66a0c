#!/usr/bin/env bash
# Inference throughput and latency, in one run: our server, Seldon MLServer serving the same
# scikit-learn model, and a bare tonic server that does no work (the ceiling), all driven by
# `mlops bench infer` at the same settings. Results: docs/BENCHMARKS.md.
#
#   python3 -m venv .venv-mlserver && .venv-mlserver/bin/pip install mlserver mlserver-sklearn
#   MLSERVER_VENV=.venv-mlserver scripts/bench/infer.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-10}"
venv="$(cd "${MLSERVER_VENV:-.venv-mlserver}" && pwd)"
work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -p mlops-cli --bin mlops
cargo build --release -p mlops-inference --example bare_oip
bin=target/x86_64-unknown-linux-gnu/release
"$venv/bin/python" scripts/bench/infer_models.py "$work/models" 9180 9181

# Ours: the whole stack in one process (`mlops up`), on ports of its own.
export MLOPS_REGISTRY_ADDR=http://127.0.0.1:9154 MLOPS_INFERENCE_ADDR=http://127.0.0.1:9101
MLOPS__ORCHESTRATOR__LISTEN=127.0.0.1:9151 MLOPS__INGESTION__LISTEN=127.0.0.1:9152 \
MLOPS__TRAINING__LISTEN=127.0.0.1:9153 MLOPS__REGISTRY__LISTEN=127.0.0.1:9154 \
MLOPS__INFERENCE__GRPC_LISTEN=127.0.0.1:9101 MLOPS__INFERENCE__HTTP_LISTEN=127.0.0.1:9100 \
MLOPS__TELEMETRY__FILTER=warn \
  "$bin/mlops" up --data-dir "$work/data" >"$work/ours.log" 2>&1 &
pids+=($!)
(cd "$work/models/mlserver" && "$venv/bin/mlserver" start . >"$work/mlserver.log" 2>&1) &
pids+=($!)
"$bin/examples/bare_oip" 127.0.0.1:9191 &
pids+=($!)
for url in 127.0.0.1:9101 127.0.0.1:9154; do
  for _ in $(seq 100); do "$bin/mlops" health --addr "http://$url" >/dev/null 2>&1 && break; sleep 0.2; done
done
for _ in $(seq 300); do curl -fs http://127.0.0.1:9180/v2/health/ready >/dev/null && break; sleep 0.2; done
curl -fs http://127.0.0.1:9180/v2/health/ready >/dev/null || { cat "$work/mlserver.log"; exit 1; }
sleep 2 # MLServer opens its gRPC port after HTTP reports ready
"$bin/mlops" models import "$work/models/bundle.json" --model lin

results="$work/results.jsonl"
run() { # server target protocol concurrency batch [rate]
  echo "$1: $3, concurrency $4, batch $5${6:+, $6 requests/s}" >&2
  local out
  if out=$("$bin/mlops" bench infer --target "$2" --protocol "$3" --model lin --features 10 \
    --concurrency "$4" --batch "$5" --duration "$seconds" ${6:+--rate "$6"} --json); then
    python3 -c "import json,sys; r=json.loads(sys.argv[1]); r['server']='$1'; print(json.dumps(r))" "$out" >>"$results"
  else
    echo "  failed (see above); left out of the table" >&2
  fi
}
for server in ours mlserver bare; do
  case $server in
    ours) grpc=http://127.0.0.1:9101 rest=http://127.0.0.1:9100 ;;
    mlserver) grpc=http://127.0.0.1:9181 rest=http://127.0.0.1:9180 ;;
    bare) grpc=http://127.0.0.1:9191 rest= ;;
  esac
  for c in 1 16 64; do run $server $grpc grpc $c 1; done
  run $server $grpc grpc 16 1000
  # Open loop at a rate both servers sustain: tail latency at equal load.
  run $server $grpc grpc 16 1 1000
  [ -n "$rest" ] && run $server $rest http 16 1
done
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def key(r): return (r["protocol"], r["concurrency"], r["batch"], r.get("rate") or 0)
by = {(r["server"],) + key(r): r for r in rows}
print("| protocol | concurrency | rows/request | offered req/s | ours req/s | MLServer req/s | bare tonic req/s | ours/MLServer | ours/bare | ours p99 ms | MLServer p99 ms |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for k in sorted({key(r) for r in rows}):
    o, m, b = by.get(("ours",) + k), by.get(("mlserver",) + k), by.get(("bare",) + k)
    f = lambda r, f: f(r) if r else None
    rps = lambda r: r["requests_per_second"]
    cell = lambda v, fmt="{:.0f}": fmt.format(v) if v is not None else "-"
    print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3] or 'max'} | {cell(f(o, rps))} | {cell(f(m, rps))} | {cell(f(b, rps))} | "
          f"{cell(rps(o) / rps(m) if o and m else None, '{:.1f}x')} | "
          f"{cell(rps(o) / rps(b) if o and b else None, '{:.0%}')} | "
          f"{cell(f(o, lambda r: r['latency_ms']['p99']), '{:.2f}')} | "
          f"{cell(f(m, lambda r: r['latency_ms']['p99']), '{:.2f}')} |")
errors = sum(r["errors"] for r in rows)
print(f"\n{len(rows)} runs of {rows[0]['seconds']:.0f} s; failed requests across all runs: {errors}")
PY
