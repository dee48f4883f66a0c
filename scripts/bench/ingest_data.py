#!/usr/bin/env python3
"""Writes the ingestion benchmark's CSV: ROWS rows x 20 columns (12 floats, 4 integers, 2 text
categories, 1 boolean, 1 date), seeded, about 370 bytes per row.

usage: ingest_data.py OUT ROWS
"""
import sys

import numpy as np


def main() -> None:
    out, rows = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(7)
    cities = np.array(["amsterdam", "berlin", "chicago", "delhi", "eindhoven", "florence"])
    tiers = np.array(["gold", "silver", "bronze"])
    header = [f"f{i}" for i in range(12)] + [f"i{i}" for i in range(4)] + ["city", "tier", "active", "day"]
    chunk = 100_000
    with open(out, "w") as f:
        f.write(",".join(header) + "\n")
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            floats = rng.normal(100.0, 25.0, size=(n, 12))
            ints = rng.integers(0, 1_000_000_000_000, size=(n, 4))
            city = cities[rng.integers(0, len(cities), n)]
            tier = tiers[rng.integers(0, len(tiers), n)]
            active = np.where(rng.random(n) < 0.5, "true", "false")
            day = (np.datetime64("2024-01-01") + rng.integers(0, 700, n)).astype(str)
            lines = []
            for r in range(n):
                lines.append(",".join(
                    [f"{v:.16f}" for v in floats[r]] + [str(v) for v in ints[r]]
                    + [city[r], tier[r], active[r], day[r]]))
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
