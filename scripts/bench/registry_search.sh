#!/usr/bin/env bash
# SearchModelVersions over 100,000 versions, and MLflow's search_model_versions over the same
# number of versions in its own SQLite registry, in one run. Results: docs/BENCHMARKS.md.
#
#   scripts/bench/registry_search.sh            # ours, then MLflow when its venv exists
#   python3 -m venv .venv-mlflow && .venv-mlflow/bin/pip install mlflow-skinny sqlalchemy alembic
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p mlops-registry --example search_bench
echo "## mlops registry"
target/x86_64-unknown-linux-gnu/release/examples/search_bench
venv="${MLFLOW_VENV:-.venv-mlflow}"
if [ -x "$venv/bin/python" ]; then
  echo
  echo "## MLflow $("$venv/bin/python" -c 'import mlflow; print(mlflow.__version__)')"
  "$venv/bin/python" scripts/bench/mlflow_search.py
fi
