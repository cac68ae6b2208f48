"""Shared benchmark plumbing: timing with warm-up and repetitions, machine info, JSON output."""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"


def scratch_dir(prefix: str) -> Path:
    """A temporary folder removed when the benchmark exits: stores and renders here take
    hundreds of MB per run, and repeated runs must not fill the disk."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def timed(fn: Callable[[], Any], *, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; median/min/max seconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "repeats": repeats}


def machine() -> dict[str, Any]:
    import numpy

    info = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "numpy": numpy.__version__}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def carried_over(name: str, key: str) -> dict[str, Any]:
    """Block ``key`` of the existing ``results/NAME.json``, for a run that skips measuring it; the
    block keeps (or gets) a ``measured`` date, so the new file says how old that part is."""
    path = RESULTS / f"{name}.json"
    try:
        old = json.loads(path.read_text())
        block = dict(old[key])
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"cannot carry '{key}' over from {path} ({exc}); run the benchmark without the skip option") from None
    block.setdefault("measured", old.get("date"))
    return block


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(), **data}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
