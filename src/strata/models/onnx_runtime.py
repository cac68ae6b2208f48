"""Frozen PyTorch networks on ONNX Runtime: exported once into the user cache, then opened per process.

Why: strata's built-in networks are small (the image UNet's feature maps are 16×16 down to 2×2,
the MiniLM text encoder reads 20 tokens), so on a CPU PyTorch's per-op overhead dominates
their time; ONNX Runtime's graph optimizations (fused attention, normalizations and
activations, convolutions in its blocked layout, one planned memory arena) remove most of it.
Measured on this 2-core machine: the UNet 21 vs ~75 ms a call at batch 2, the text encoder 5 vs
15 ms a prompt. ``bench/generate.py`` measures the UNet against eager PyTorch in every run.

A network is exported once with ``torch.onnx`` (a few seconds) into ``$STRATA_CACHE/<folder>``
(see :func:`strata.files.user_cache_dir`), under a name that carries what the graph depends on —
the weights, the config, the export format and the library versions — written atomically; later
processes only open a session on it (~1 s for the UNet). A cache file ONNX Runtime cannot open
is exported again; an unwritable cache runs the export from memory. Only networks whose weights
never change run here (loaded from a folder or a package); a model being trained runs eagerly.

``STRATA_UNET_RUNTIME=torch`` runs every network eagerly in PyTorch instead (for debugging, or a
platform without ONNX Runtime). The name predates the text encoder's graph; it covers both.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from strata.errors import ModelError
from strata.files import atomic_write_bytes, mark_used, prune_cache

ENV_RUNTIME = "STRATA_UNET_RUNTIME"
#: ONNX opset of every exported graph (part of each cache file's name).
OPSET = 17
#: ``torch.onnx.export`` keeps process-wide state: two exports must never overlap (the server's
#: workers may start generating at the same moment). Reentrant, so a caller that makes a session
#: under it (and lets other threads wait for that session) can export inside.
EXPORT_LOCK = threading.RLock()


def onnx_enabled() -> bool:
    """False when ``STRATA_UNET_RUNTIME`` asks for eager PyTorch ("torch")."""
    return os.environ.get(ENV_RUNTIME, "onnx").strip().lower() != "torch"


def runtime_versions() -> str:
    """The torch and onnxruntime versions, for cache file names (either can change a graph or its format)."""
    import onnxruntime as ort

    return f"torch{torch.__version__.split('+')[0]}-ort{ort.__version__}"


def export_graph(module: torch.nn.Module, example: tuple[torch.Tensor, ...], *, input_names: list[str],
                 output_names: list[str], dynamic_axes: dict[str, dict[int, str]]) -> bytes:
    """``module`` as ONNX bytes (fp32, opset :data:`OPSET`), traced on ``example`` inputs."""
    buf = io.BytesIO()
    with EXPORT_LOCK, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracers warn about shape-dependent Python branches (diffusers, transformers)
        torch.onnx.export(module.eval(), example, buf, input_names=input_names, output_names=output_names,
                          opset_version=OPSET, dynamo=False, dynamic_axes=dynamic_axes)
    return buf.getvalue()


def cached_session(path: Path, export: Callable[[], bytes], *, keep: int, threads: int, what: str) -> Any:
    """An ONNX Runtime session on the graph cached at ``path``, exported by ``export()`` first if
    it is not there (or cannot be opened).

    ``keep``: the cache folder keeps this many of its most recently used graphs of the same kind
    (same name prefix up to the first ``-``). ``what`` names the network in errors.

    Raises:
        ModelError: the export or the session failed (with the switch to eager PyTorch).
    """
    from_cache = path.is_file()
    if from_cache:
        mark_used(path)
    try:
        graph = path if from_cache else _export_to(path, export, keep)
        try:
            return open_session(graph, threads)
        except Exception:  # noqa: BLE001 - a damaged or truncated cache file: make it again, once
            if not from_cache:
                raise
            path.unlink(missing_ok=True)
            return open_session(_export_to(path, export, keep), threads)
    except Exception as e:  # noqa: BLE001 - any export/open failure: say what to do
        raise ModelError(f"could not run {what} on ONNX Runtime ({type(e).__name__}: {e}); "
                         f"set {ENV_RUNTIME}=torch to run it in PyTorch") from e


def _export_to(path: Path, export: Callable[[], bytes], keep: int) -> Path | bytes:
    """Export into the cache; the bytes themselves when the cache folder is not writable."""
    data = export()
    try:
        atomic_write_bytes(path, data)
    except OSError:  # a read-only home: run from memory, export again next time
        return data
    prune_cache(path.parent, f"{path.name.split('-')[0]}-*.onnx", keep=keep)
    return path


def open_session(graph: Path | bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session on a graph file (or its bytes) with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), sess_options=options,
                                providers=["CPUExecutionProvider"])
