#!/usr/bin/env python3
"""Fits scikit-learn's LinearRegression on the diabetes data and writes the same model for both
servers of scripts/bench/infer.sh: our platform bundle (bundle.json) and an MLServer model
directory (model.joblib, model-settings.json, settings.json with parallel_workers 0, which
Python 3.11 needs; see ../shared/reference/benchmarks.md).

Usage: infer_models.py OUT_DIR MLSERVER_HTTP_PORT MLSERVER_GRPC_PORT
"""
import json
import pathlib
import sys

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression

out, http_port, grpc_port = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
data = load_diabetes()
model = LinearRegression().fit(data.data, data.target)
out.mkdir(parents=True, exist_ok=True)
(out / "bundle.json").write_text(json.dumps({
    "format_version": 1,
    "model_type": "linear",
    "feature_names": list(data.feature_names),
    "target": "target",
    "coefficients": model.coef_.tolist(),
    "intercept": float(model.intercept_),
}))
mlserver = out / "mlserver"
mlserver.mkdir(exist_ok=True)
joblib.dump(model, mlserver / "model.joblib")
(mlserver / "model-settings.json").write_text(json.dumps({
    "name": "lin",
    "implementation": "mlserver_sklearn.SKLearnModel",
    "parameters": {"uri": "./model.joblib", "version": "v1"},
}))
(mlserver / "settings.json").write_text(json.dumps({
    "http_port": http_port, "grpc_port": grpc_port, "metrics_port": grpc_port + 1,
    "parallel_workers": 0,
}))
