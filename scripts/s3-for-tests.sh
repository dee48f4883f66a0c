#!/usr/bin/env bash
# Starts an S3-compatible server for the storage tests: moto (from PyPI, in a venv under the
# user cache) on 127.0.0.1:${MLOPS_TEST_S3_PORT:-9000}, with the bucket `mlops-test`. Then:
#   MLOPS_TEST_S3_ENDPOINT=http://127.0.0.1:9000 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
set -euo pipefail
port="${MLOPS_TEST_S3_PORT:-9000}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/mlops-moto"
if [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "moto[server]==5.2.5"
fi
if ! curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1; then
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"${TMPDIR:-/tmp}/moto.log" 2>&1 &
  for _ in $(seq 50); do
    curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
    sleep 0.2
  done
fi
AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "$venv/bin/python" - "$port" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1")
if "mlops-test" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket="mlops-test")
PY
echo "S3 (moto) ready on http://127.0.0.1:$port, bucket mlops-test"
