#!/usr/bin/env python3
"""The training benchmark's scikit-learn side: the same raw files fit_bench writes.

usage: train_sklearn.py DIR ROWS FEATURES MODEL   (MODEL: ols | ridge | logistic)
Prints one JSON line like fit_bench: the fit's seconds, the training loss, the peak RSS.
"""
import json
import resource
import sys
import time

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import log_loss, mean_squared_error


def main() -> None:
    directory, rows, features, model = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    x = np.fromfile(f"{directory}/X.f64", dtype="<f8", count=rows * features).reshape(rows, features)
    y = np.fromfile(f"{directory}/{'y_cls' if model == 'logistic' else 'y_reg'}.f64", dtype="<f8", count=rows)
    estimator = {"ols": LinearRegression(), "ridge": Ridge(alpha=1.0),
                 "logistic": LogisticRegression()}[model]
    started = time.perf_counter()
    estimator.fit(x, y)
    seconds = time.perf_counter() - started
    if model == "logistic":
        loss_name, loss = "log_loss", log_loss(y, estimator.predict_proba(x))
    else:
        loss_name, loss = "mse", mean_squared_error(y, estimator.predict(x))
    print(json.dumps({"impl": "scikit-learn", "model": model, "rows": rows, "seconds": round(seconds, 4),
                      loss_name: loss, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
