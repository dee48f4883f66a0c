#!/usr/bin/env python3
"""Export scikit-learn's diabetes dataset as the bundled example CSV, and the golden numbers the
ML tests compare against (an sklearn LinearRegression on the same data).

The data: Efron, Hastie, Johnstone and Tibshirani (2004), "Least Angle Regression", Annals of
Statistics; as shipped by scikit-learn (BSD-3-Clause). 442 patients, 10 baseline features
(already mean-centred and scaled by scikit-learn), target a measure of disease progression one
year later.

Usage: pip install scikit-learn && python3 scripts/export_diabetes.py
"""
import json
import pathlib

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSV = ROOT / "examples" / "datasets" / "diabetes.csv"
GOLDEN = ROOT / "crates" / "ml" / "tests" / "fixtures" / "diabetes_ols.json"


def main() -> None:
    data = load_diabetes()
    features = list(data.feature_names)
    x, y = data.data, data.target
    with CSV.open("w") as out:
        out.write(",".join(features + ["target"]) + "\n")
        for row, target in zip(x, y):
            out.write(",".join(repr(float(v)) for v in row) + f",{float(target)!r}\n")

    # Fit on the full data so the Rust test needs no shared random split.
    model = LinearRegression().fit(x, y)
    pred = model.predict(x)
    # A rank-deficient design: the last feature duplicated. sklearn (scipy lstsq / gelsd) returns
    # the minimum-norm solution, which splits the weight equally between the two copies.
    x_dup = np.hstack([x, x[:, -1:]])
    dup = LinearRegression().fit(x_dup, y)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps({
        "features": features,
        "intercept": float(model.intercept_),
        "coefficients": [float(c) for c in model.coef_],
        "mse": float(mean_squared_error(y, pred)),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2_score(y, pred)),
        "duplicated_last_feature": {
            "intercept": float(dup.intercept_),
            "coefficients": [float(c) for c in dup.coef_],
        },
    }, indent=2) + "\n")
    print(f"wrote {CSV} ({len(y)} rows) and {GOLDEN}")


if __name__ == "__main__":
    main()
