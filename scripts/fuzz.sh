#!/usr/bin/env bash
# Runs every fuzz target for a fixed time budget (cargo-fuzz, libFuzzer, AddressSanitizer) and
# prints executions and crashes per target. Not part of CI.
#   scripts/fuzz.sh [seconds-per-target]        (default 60)
# Needs: a nightly toolchain (`rustup toolchain install nightly`) and `cargo install cargo-fuzz`.
# A crash leaves its input in fuzz/artifacts/<target>/: turn it into a regression test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
budget=${1:-60}
targets=(csv_import oip_tensor model_bundle pipeline_file)

cargo +nightly fuzz build -O
printf '%-16s %12s %8s\n' target executions crashes
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
  log=$(mktemp)
  # -print_final_stats reports the executions; a crash makes libFuzzer exit non-zero.
  if cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
      -max_total_time="$budget" -print_final_stats=1 -rss_limit_mb=2048 >"$log" 2>&1; then
    :
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  crashes=$(find "artifacts/$target" -type f -name 'crash-*' -o -type f -name 'oom-*' -o -type f -name 'timeout-*' | wc -l)
  printf '%-16s %12s %8s\n' "$target" "${runs:-?}" "$crashes"
  rm -f "$log"
done
