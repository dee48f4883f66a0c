# Sourced by the benchmarks that run our stack: `start_stack BIN DATA_DIR LOG` starts `mlops up`
# on fixed local ports, reading imports under "$work/imports", records its pid in `stack_pid`
# (and in the caller's `pids`, for its exit trap) and returns once ingestion and training answer.
start_stack() {
  local bin=$1 data=$2 log=$3
  MLOPS__INGESTION__IMPORT_ROOT="$work/imports" MLOPS__INGESTION__LISTEN=127.0.0.1:9252 \
  MLOPS__ORCHESTRATOR__LISTEN=127.0.0.1:9251 MLOPS__TRAINING__LISTEN=127.0.0.1:9253 \
  MLOPS__REGISTRY__LISTEN=127.0.0.1:9254 MLOPS__INFERENCE__GRPC_LISTEN=127.0.0.1:9201 \
  MLOPS__INFERENCE__HTTP_LISTEN=127.0.0.1:9200 MLOPS__TELEMETRY__FILTER=warn \
    "$bin" up --data-dir "$data" >"$log" 2>&1 &
  stack_pid=$!
  pids+=("$stack_pid")
  local addr
  for addr in http://127.0.0.1:9252 http://127.0.0.1:9253; do
    for _ in $(seq 100); do "$bin" health --addr "$addr" >/dev/null 2>&1 && break; sleep 0.2; done
  done
}
export MLOPS_INGESTION_ADDR=http://127.0.0.1:9252 MLOPS_TRAINING_ADDR=http://127.0.0.1:9253
