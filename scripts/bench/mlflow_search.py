#!/usr/bin/env python3
"""The peer for scripts/bench/registry_search.sh: MLflow's search_model_versions over 100,000
model versions (100 models x 1,000, tags on every tenth, one alias per model) in its own
SQLite registry, called in-process on its SqlAlchemyStore (no HTTP: the kindest setting for it).

MLflow cannot filter versions by metric (metrics live on runs) or by alias, so only the queries
both can answer are timed.
"""
import os
import statistics
import tempfile
import time

from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlModelVersionTag,
    SqlRegisteredModel,
    SqlRegisteredModelAlias,
)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

MODELS = 100
PER_MODEL = int(os.environ.get("BENCH_VERSIONS", MODELS * 1000)) // MODELS
RUNS = 50


def seed(store):
    with store.ManagedSessionMaker() as session:
        i = 0
        for m in range(MODELS):
            name = f"model-{m:03d}"
            session.add(SqlRegisteredModel(name=name, creation_time=0, last_updated_time=0))
            session.flush()
            rows = []
            for v in range(1, PER_MODEL + 1):
                i += 1
                created = 1_700_000_000_000 + i * 1000
                rows.append(SqlModelVersion(
                    name=name, version=v, creation_time=created, last_updated_time=created,
                    source=f"models:/{name}/{v}", run_id="", status="READY",
                    storage_location=f"file:///artifacts/{name}/{v}"))
                if v % 10 == 0:
                    rows.append(SqlModelVersionTag(
                        name=name, version=v, key="stage",
                        value="prod" if v % 20 == 0 else "staging"))
            rows.append(SqlRegisteredModelAlias(name=name, alias="champion", version=PER_MODEL // 2))
            session.add_all(rows)
            session.flush()


def timed(label, call):
    results = len(call())
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p95 = times[min(len(times), int(len(times) * 0.95 + 0.999)) - 1]
    print(f"| {label} | {results} | {statistics.median(times):.2f} | {p95:.2f} |")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        store = SqlAlchemyStore(f"sqlite:///{tmp}/mlflow.db")
        started = time.perf_counter()
        seed(store)
        print(f"{MODELS * PER_MODEL} versions ({MODELS} models x {PER_MODEL}) seeded in "
              f"{time.perf_counter() - started:.1f} s\n")
        print("| query | results | median ms | p95 ms |\n|---|---:|---:|---:|")
        newest = ["creation_timestamp DESC"]
        timed("newest 50, all models",
              lambda: store.search_model_versions(max_results=50, order_by=newest))
        timed("one model, newest 50",
              lambda: store.search_model_versions("name='model-042'", 50, newest))
        timed("tag stage=prod, one model",
              lambda: store.search_model_versions("name='model-042' and tags.stage='prod'", 50, newest))
        token = None
        page_times = []
        for _ in range(100):
            started = time.perf_counter()
            page = store.search_model_versions(max_results=50, order_by=newest, page_token=token)
            page_times.append((time.perf_counter() - started) * 1000)
            token = page.token
        page_times = sorted(page_times[90:])
        print(f"| pages 91-100 of newest-first paging | 50 | {statistics.median(page_times):.2f} | "
              f"{page_times[-1]:.2f} |")


if __name__ == "__main__":
    main()
