"""Evaluators for benchmarks/bench_search.py's throughput measurement (importable by worker processes)."""

import time


def one_second(config: dict) -> float:
    time.sleep(1.0)
    return float(config["x"])
