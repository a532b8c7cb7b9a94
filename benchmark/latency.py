"""CPU latency: warm up, fixed thread count, many runs; median and p90. Plus the machine's peak."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota if one is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def measure_latency(run: Callable[[], object], warmup: int = 5, min_runs: int = 20, min_seconds: float = 2.0) -> dict:
    """Time ``run()`` until both ``min_runs`` runs and ``min_seconds`` seconds are reached.

    ``run`` must be the inference call alone: runners fix their thread count when built."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        tic = time.perf_counter()
        run()
        times.append(time.perf_counter() - tic)
    return summarize(np.asarray(times) * 1000)


def summarize(ms: np.ndarray) -> dict:
    """Median, p90, run count and throughput of batch-1 times in milliseconds."""
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
