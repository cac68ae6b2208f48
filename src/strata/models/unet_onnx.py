"""The built-in UNet on ONNX Runtime: what :meth:`ImageDiffusionModel.denoise` runs by default.

Why: on this 2-core CPU a call of the shipped UNet took 21 ms in ONNX Runtime against 44 ms
as a frozen TorchScript graph (what strata used before) and ~75 ms eagerly at batch 2 (one
image with guidance), and 93–106 vs 133 ms (TorchScript) at batch 16 (eight images).
``bench/generate.py`` measures it against eager PyTorch in every run.
The network is small and its feature maps tiny (16×16 down to 2×2), so per-op overhead
dominates; ONNX Runtime's CPU graph optimizations (convolutions in its blocked NCHWc layout,
fused activations and normalizations, one planned memory arena) remove most of it. Outputs
match eager PyTorch within ~5e-6 per call.

The UNet is exported once with ``torch.onnx`` — dynamic batch and token axes, so one graph
serves any ``count`` — which takes a few seconds, into the user cache (``$STRATA_CACHE/unet``,
see :func:`strata.files.user_cache_dir`), named by the weights hash and the torch, diffusers
and onnxruntime versions and written atomically; later processes only open a session on it
(~1 s). A cache file ONNX Runtime cannot open is exported again. Only weights loaded from a
folder run here (they have a hash and never change); a model being trained runs eagerly.

``STRATA_UNET_RUNTIME=torch`` runs the UNet eagerly in PyTorch instead (for debugging, or a
platform without ONNX Runtime).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from strata.errors import ModelError
from strata.files import atomic_write_bytes, mark_used, prune_cache, user_cache_dir

if TYPE_CHECKING:
    from strata.models.image_diffusion import ImageDiffusionModel

ENV_RUNTIME = "STRATA_UNET_RUNTIME"
#: Bump when the exported graph changes (inputs, opset, export options): old cache files are then ignored.
EXPORT_VERSION = 1
OPSET = 17
#: Exported graphs kept in the cache (the most recently used; older weights' and versions' go).
KEEP_GRAPHS = 3
INPUTS = ("x", "t", "ctx", "mask", "guide")  # "guide": only a UNet with guidance features
_EXPORT_LOCK = threading.Lock()
_SAMPLING_LOCK = threading.Lock()
_sampling = {"loops": 0, "budget": 0}  # sampling loops running now; torch's thread count before the first


def onnx_enabled() -> bool:
    """False when ``STRATA_UNET_RUNTIME`` asks for eager PyTorch ("torch")."""
    return os.environ.get(ENV_RUNTIME, "onnx").strip().lower() != "torch"


class _UNetCall(torch.nn.Module):
    """The UNet as a plain tensor function (what the exporter traces); ``t`` is one timestep per row."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, mask: torch.Tensor,
                guide: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x, t, encoder_hidden_states=context, encoder_attention_mask=mask, timestep_cond=guide,
                         return_dict=False)[0]


def cache_path(weights_sha256: str, unet_config: dict) -> Path:
    """Where the exported graph of these weights and this UNet config is cached.

    The name carries the weights hash, a hash of the UNet's config (the same weights under another
    config — heads, sizes — trace another graph), the export version and opset, and the torch,
    diffusers and onnxruntime versions (any of them can change the graph or its file format).
    """
    import diffusers
    import onnxruntime as ort

    # Without diffusers' bookkeeping keys ("_class_name", "_use_default_values", ...): they do not
    # change the graph, and "_use_default_values" is a list made from a set, in an order that
    # changes with each process's string hashing — it made every process export again (~5 s).
    graph_config = {k: v for k, v in unet_config.items() if not k.startswith("_")}
    config = hashlib.sha256(json.dumps(graph_config, sort_keys=True, default=str).encode()).hexdigest()
    versions = f"torch{torch.__version__.split('+')[0]}-diffusers{diffusers.__version__}-ort{ort.__version__}"
    return user_cache_dir("unet") / (f"unet-{weights_sha256[:16]}-{config[:8]}-v{EXPORT_VERSION}-opset{OPSET}-"
                                     f"{versions}.onnx")


def export_onnx(unet: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    """The UNet as ONNX bytes (fp32, dynamic batch and token axes), traced on ``example`` inputs."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer warns about diffusers' shape-dependent Python branches
        torch.onnx.export(
            _UNetCall(unet).eval(), example, buf, input_names=list(INPUTS[:len(example)]), output_names=["out"],
            opset_version=OPSET, dynamo=False,
            dynamic_axes={"x": {0: "batch"}, "t": {0: "batch"}, "ctx": {0: "batch", 1: "tokens"},
                          "mask": {0: "batch", 1: "tokens"}, "out": {0: "batch"},
                          **({"guide": {0: "batch"}} if len(example) > 4 else {})})
    return buf.getvalue()


class OnnxUNet:
    """An ONNX Runtime session running one UNet; call it like :meth:`ImageDiffusionModel.denoise`."""

    def __init__(self, unet: torch.nn.Module, example: tuple[torch.Tensor, ...], weights_sha256: str):
        path = _graph_path(unet, weights_sha256)
        from_cache = path.is_file()
        if from_cache:
            mark_used(path)
        try:
            graph = path if from_cache else _export_to(path, unet, example)
            try:
                self.session = _open(graph)
            except Exception:  # noqa: BLE001 - a damaged or truncated cache file: make it again, once
                if not from_cache:
                    raise
                path.unlink(missing_ok=True)
                self.session = _open(_export_to(path, unet, example))
        except Exception as e:  # noqa: BLE001 - any export/open failure: say what to do
            raise ModelError(f"could not run the image model's UNet on ONNX Runtime ({type(e).__name__}: {e}); "
                             f"set {ENV_RUNTIME}=torch to run it in PyTorch") from e
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, mask: torch.Tensor,
                 guide: torch.Tensor | None = None) -> torch.Tensor:
        feeds = dict(zip(INPUTS, as_inputs(x, t, context, mask, guide)))
        out = self.session.run(None, {k: v.numpy() for k, v in feeds.items() if k in self.input_names})[0]
        return torch.from_numpy(np.asarray(out))


def _export_to(path: Path, unet: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> Path | bytes:
    """Export into the cache; the bytes themselves when the cache folder is not writable."""
    data = export_onnx(unet, example)
    try:
        atomic_write_bytes(path, data)
    except OSError:  # a read-only home: run from memory, export again next time
        return data
    prune_cache(path.parent, "unet-*.onnx", keep=KEEP_GRAPHS)
    return path


def _open(graph: Path | bytes):  # noqa: ANN202 - onnxruntime.InferenceSession, imported lazily
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = thread_budget()  # the budget torch was given (--threads)
    options.inter_op_num_threads = 1
    return ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), sess_options=options,
                                providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def one_torch_thread_while_sampling() -> Iterator[None]:
    """Give torch one thread while a sampling loop runs its UNet on ONNX Runtime.

    Between UNet calls torch only does a sampler step on a few small tensors; with its OpenMP
    threads spinning beside ONNX Runtime's, 8 images took 2.3–2.5 s, with one torch thread
    1.9 s (measured, 2 cores). Process-wide and counted, so concurrent loops (the server's
    workers) restore torch's setting only when the last one ends; ONNX Runtime sessions made
    meanwhile still get the full budget (:func:`thread_budget`).
    """
    with _SAMPLING_LOCK:
        if _sampling["loops"] == 0:
            _sampling["budget"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _sampling["loops"] += 1
    try:
        yield
    finally:
        with _SAMPLING_LOCK:
            _sampling["loops"] -= 1
            if _sampling["loops"] == 0:
                torch.set_num_threads(_sampling["budget"])


def thread_budget() -> int:
    """Threads for ONNX Runtime: torch's setting (``--threads``), as it was before sampling lowered it."""
    with _SAMPLING_LOCK:
        return _sampling["budget"] if _sampling["loops"] else torch.get_num_threads()


def as_inputs(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, mask: torch.Tensor,
              guide: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """The graph's inputs: float32, contiguous, with one (float) timestep per row (and the
    guidance features of a UNet that reads them)."""
    batch = x.shape[0]
    steps = t.reshape(-1).to(torch.float32).expand(batch) if t.numel() == 1 else t.to(torch.float32)
    inputs = (x, steps, context, mask) if guide is None else (x, steps, context, mask, guide)
    return tuple(v.to(torch.float32).contiguous() for v in inputs)


def export_pending(model: "ImageDiffusionModel") -> bool:
    """True when the model's next UNet call will export its graph first (runs on ONNX Runtime,
    no session yet, nothing in the cache for these weights)."""
    if not model.runs_on_onnx() or model._runtime is not None or model.weights_sha256 is None:
        return False
    return not _graph_path(model.unet, model.weights_sha256).is_file()


def _graph_path(unet: torch.nn.Module, weights_sha256: str) -> Path:
    """:func:`cache_path` of this UNet (its config) with these weights."""
    return cache_path(weights_sha256, dict(getattr(unet, "config", {})))


def onnx_unet(model: "ImageDiffusionModel", x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
              mask: torch.Tensor, guide: torch.Tensor | None = None) -> OnnxUNet:
    """The model's :class:`OnnxUNet` (exported on these inputs, or opened from the cache), made once.

    One lock for the process: ``torch.onnx.export`` keeps process-wide state, so two exports must
    never overlap (the server's workers may start generating at the same moment), and threads
    waiting here get the session the first one made instead of exporting again.
    """
    with _EXPORT_LOCK:
        if model._runtime is None:
            model._runtime = OnnxUNet(model.unet, as_inputs(x, t, context, mask, guide), model.weights_sha256)
        return model._runtime

