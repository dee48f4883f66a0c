#!/usr/bin/env python3
"""The peer of scripts/bench/train_read.sh: the same stored version (its Parquet file, as
`mlops data download` gives it) read with pandas and fitted with scikit-learn as our job does:
a seeded 80/20 split, the text columns one-hot encoded, ordinary least squares, R^2 on the
held-out rows. Prints one JSON line with the wall time and the process's peak RSS.

usage: train_read_peer.py PARQUET TARGET
"""
import json
import resource
import sys
import time

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder


def main() -> None:
    path, target = sys.argv[1], sys.argv[2]
    start = time.perf_counter()
    frame = pd.read_parquet(path)
    for name in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[name]):
            # Epoch milliseconds, as our reader gives a timestamp to the estimator.
            frame[name] = frame[name].astype("int64") // 1_000_000 if frame[name].dt.unit == "ns" else frame[name].astype("int64")
    y = frame.pop(target)
    texts = [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]
    x_train, x_test, y_train, y_test = train_test_split(frame, y, test_size=0.2, random_state=42)
    del frame, y
    model = make_pipeline(
        ColumnTransformer([("one_hot", OneHotEncoder(sparse_output=False), texts)], remainder="passthrough"),
        LinearRegression(),
    )
    model.fit(x_train, y_train)
    r2 = r2_score(y_test, model.predict(x_test))
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "scikit-learn", "rows": len(y_train) + len(y_test), "seconds": round(seconds, 3),
                      "peak_rss_mb": round(peak_mb, 1), "r2": round(r2, 6)}))


if __name__ == "__main__":
    main()
