"""The built-in UNet on ONNX Runtime: what :meth:`ImageDiffusionModel.denoise` runs by default.

Why: on this 2-core CPU a call of the shipped UNet took 21 ms in ONNX Runtime against 44 ms
as a frozen TorchScript graph (what strata used before) and ~75 ms eagerly at batch 2 (one
image with guidance), and 93–106 vs 133 ms (TorchScript) at batch 16 (eight images).
``bench/generate.py`` measures it against eager PyTorch in every run. Outputs match eager
PyTorch within ~5e-6 per call.

The UNet is exported with dynamic batch and token axes, so one graph serves any ``count``; the
export, the cache (``$STRATA_CACHE/unet``, by weights hash) and the fallbacks are
:mod:`strata.models.onnx_runtime`'s. Only weights loaded from a folder run here (they have a hash
and never change); a model being trained runs eagerly. ``STRATA_UNET_RUNTIME=torch`` runs the
UNet eagerly in PyTorch instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from strata.files import user_cache_dir
from strata.models.onnx_runtime import EXPORT_LOCK, OPSET, cached_session, export_graph

if TYPE_CHECKING:
    from strata.models.image_diffusion import ImageDiffusionModel

#: Bump when the exported graph changes (inputs, export options): old cache files are then ignored.
EXPORT_VERSION = 1
#: Exported graphs kept in the cache (the most recently used; older weights' and versions' go).
KEEP_GRAPHS = 3
INPUTS = ("x", "t", "ctx", "mask", "guide")  # "guide": only a UNet with guidance features
_SAMPLING_LOCK = threading.Lock()
_sampling = {"loops": 0, "budget": 0}  # sampling loops running now; torch's thread count before the first


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
    return export_graph(
        _UNetCall(unet), example, input_names=list(INPUTS[:len(example)]), output_names=["out"],
        dynamic_axes={"x": {0: "batch"}, "t": {0: "batch"}, "ctx": {0: "batch", 1: "tokens"},
                      "mask": {0: "batch", 1: "tokens"}, "out": {0: "batch"},
                      **({"guide": {0: "batch"}} if len(example) > 4 else {})})


class OnnxUNet:
    """An ONNX Runtime session running one UNet; call it like :meth:`ImageDiffusionModel.denoise`."""

    def __init__(self, unet: torch.nn.Module, example: tuple[torch.Tensor, ...], weights_sha256: str):
        self.session = cached_session(_graph_path(unet, weights_sha256), lambda: export_onnx(unet, example),
                                      keep=KEEP_GRAPHS, threads=thread_budget(), what="the image model's UNet")
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, mask: torch.Tensor,
                 guide: torch.Tensor | None = None) -> torch.Tensor:
        feeds = dict(zip(INPUTS, as_inputs(x, t, context, mask, guide)))
        out = self.session.run(None, {k: v.numpy() for k, v in feeds.items() if k in self.input_names})[0]
        return torch.from_numpy(np.asarray(out))


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

    Under the process's export lock (:data:`strata.models.onnx_runtime.EXPORT_LOCK`): threads
    waiting here get the session the first one made instead of exporting again.
    """
    with EXPORT_LOCK:
        if model._runtime is None:
            model._runtime = OnnxUNet(model.unet, as_inputs(x, t, context, mask, guide), model.weights_sha256)
        return model._runtime

