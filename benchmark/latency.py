"""CPU latency: warm up, fixed thread count, many runs; median and p90. Plus the machine's peak."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch


def measure_latency(run: Callable[[], object], warmup: int = 5, min_runs: int = 20, max_runs: int = 300,
                    min_seconds: float = 2.0) -> dict:
    """Time ``run()`` until both ``min_runs`` and ``min_seconds`` are reached (or ``max_runs``)."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        tic = time.perf_counter()
        run()
        times.append(time.perf_counter() - tic)
    ms = np.asarray(times) * 1000
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms),
            "images_per_s": float(1000 / np.median(ms))}


def peak_gflops(threads: int, size: int = 1024, seconds: float = 1.0) -> float:
    """Measured fp32 matmul throughput of this machine at ``threads`` threads (GFLOP/s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        for _ in range(3):
            a @ b
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        return 2 * size**3 * count / (time.perf_counter() - start) / 1e9
    finally:
        torch.set_num_threads(previous)
