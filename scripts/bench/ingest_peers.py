#!/usr/bin/env python3
"""The ingestion benchmark's peers on the same CSV: pandas (read_csv + to_parquet, pyarrow) or
polars (read_csv + write_parquet). Prints one JSON line: seconds, MB/s, peak RSS.

usage: ingest_peers.py pandas|polars CSV OUT_PARQUET
"""
import json
import os
import resource
import sys
import time


def main() -> None:
    tool, csv, out = sys.argv[1], sys.argv[2], sys.argv[3]
    started = time.perf_counter()
    if tool == "pandas":
        import pandas as pd
        pd.read_csv(csv).to_parquet(out, compression="snappy")
    else:
        import polars as pl
        pl.read_csv(csv, try_parse_dates=True).write_parquet(out, compression="snappy")
    seconds = time.perf_counter() - started
    size = os.path.getsize(csv) / 1e6
    print(json.dumps({"impl": tool, "csv_mb": round(size, 1), "seconds": round(seconds, 3),
                      "mb_per_s": round(size / seconds, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
