"""Shared pieces of the benchmarks: the row format, timing, the machine's description."""
from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROW_KEYS = ("row", "ours", "theirs", "ratio", "target", "met", "details", "baseline")


def make_row(
    row: str,
    ours: str,
    theirs: str,
    ratio: float | None,
    target: str,
    met: bool | None,
    details: dict[str, Any],
    baseline: str = "",
) -> dict[str, Any]:
    """One table row: both figures with units, ``ratio`` in the target's terms, ``met`` None = no target (or no
    like-for-like comparison); ``baseline``: one line naming the papers' code the "paper's way" reproduces."""
    return dict(zip(ROW_KEYS, (row, ours, theirs, None if ratio is None else round(ratio, 3), target, met, details,
                               baseline)))


def best_times(methods: dict[str, Callable[[], Any]], rounds: int = 1) -> tuple[dict[str, float], dict[str, Any]]:
    """Best wall time in seconds of each method over ``rounds`` interleaved rounds, and each last result.

    Interleaving (a, b, a, b, ...) and keeping the best spreads the load of other processes on a shared
    machine over every method instead of penalising whichever ran during a busy spell.
    """
    best = {name: float("inf") for name in methods}
    results: dict[str, Any] = {}
    for _ in range(max(1, rounds)):
        for name, fn in methods.items():
            started = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - started)
    return best, results


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: str) -> dict[str, Any]:
    """CPU model, cores usable by this process, load, library versions and the torch device."""
    import av
    import numpy
    import torch
    import zarr

    from extract.extractor import resolve_device

    resolved = resolve_device(device)
    described = {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "zarr": zarr.__version__,
        "pyav": av.__version__,
        "device": resolved,
    }
    if resolved == "cuda":
        described["gpu"] = torch.cuda.get_device_name(0)
    try:
        import cv2

        described["opencv"] = cv2.__version__
    except ImportError:
        described["opencv"] = None
    return described


def import_shared_weights(names: tuple[str, ...]) -> None:
    """Copy the real weights of ``names`` from the shared folder into the weights cache when it has them."""
    from avscene.paths import shared_dir
    from extract.registry import get_spec
    from extract.weights import import_dir

    folder = shared_dir() / "weights"
    if folder.is_dir():
        import_dir(folder, [get_spec(n) for n in names])


def timed_extraction(label: str, **config: Any) -> tuple[Any, float, Any]:
    """Extract into a fresh temporary store with ``RunConfig(**config)``: the run's summary, its wall seconds and the
    config. Raises RuntimeError naming ``label`` when any clip failed."""
    from extract.runner import RunConfig, run_extraction

    with tempfile.TemporaryDirectory(prefix="avscene-bench-") as tmp:
        cfg = RunConfig(store=str(Path(tmp) / "bench.zarr"), progress=False, **config)
        started = time.perf_counter()
        summary = run_extraction(cfg)
        wall_s = time.perf_counter() - started
    failed = sum(summary.failed.values())
    if failed:
        raise RuntimeError(f"{label}: {failed} clip failures, e.g. {summary.errors[0]}")
    return summary, wall_s, cfg
