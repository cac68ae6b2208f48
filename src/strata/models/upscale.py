"""The built-in upscaler: learned ×2 / ×4 super-resolution of RGBA images, tiled for any size.

Architecture (why this one): an EDSR-lite network (Lim et al. 2017, "Enhanced Deep Residual
Networks for Single Image Super-Resolution") — a 3×3 head, ``blocks`` residual blocks
(conv → ReLU → conv, no batch norm: EDSR §3.1 shows normalization removes range flexibility and
costs quality in SR), a global skip, and a sub-pixel tail (conv to ``4·s²`` channels →
``PixelShuffle(s)``, ESPCN, Shi et al. 2016). Every convolution runs at the *low* resolution, so
the cost per output pixel is ~1/s² of a network working at the output size; measured on this
2-core CPU, 32 channels × 4 blocks upsample 256² → 1024² in well under a second while an
ESRGAN RRDB network is two orders of magnitude slower (``bench/upscale.py``). The network
predicts a residual over bicubic interpolation (as VDSR, Kim et al. 2016): it starts from a
correct answer and only has to learn the missing detail, which matters for a short CPU training
run.

×2 and ×4 share the body and have one tail each (as MDSR, Lim et al. 2017 §3.2): the features
that find edges do not depend on the factor, only their rendering into sub-pixels does, so one
file serves both at +4 % parameters instead of a second model.

Pixels enter as *premultiplied* RGBA in [0, 1], so alpha is upscaled like color and colors
under transparent pixels (often garbage) cannot bleed into edges (no fringes); outputs are
un-premultiplied by :func:`strata.ops.edit.unpremultiply`. Opaque images stay exactly opaque, and
output pixels more than 2 input px from any visible pixel stay exactly transparent.

Large images are processed in tiles (:func:`tiled`): each tile is run with ``overlap`` pixels of
real context on every side and neighbouring tiles are cross-faded over a band of ``overlap/2``
pixels, so memory is bounded by the tile size and, when ``overlap/2`` covers the network's
receptive radius, the result equals the untiled one (float rounding aside).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from strata.errors import ModelError
from strata.models.builtin import UPSCALE
from strata.models.weights_folder import config_from_dict, load_network, save_weights_folder

MODEL_ID = UPSCALE.id  # the registry's name for it (models/builtin.py)
SCALES = (2, 4)


@dataclass(frozen=True)
class UpscaleConfig:
    """Shape of the upscaler (the constructor is the config; it round-trips through JSON).

    Args:
        channels: width of every convolution (all at the input resolution).
        blocks: residual blocks; each adds 2 px of receptive radius.
        scales: the factors with their own tail (2 and 4).
    """

    channels: int = 32
    blocks: int = 4
    scales: tuple[int, ...] = SCALES

    @classmethod
    def from_dict(cls, d: dict) -> "UpscaleConfig":
        """Build from a (JSON) dict; lists become tuples, unknown keys are an error."""
        return config_from_dict(cls, d, "upscaler")

    @property
    def receptive_radius(self) -> int:
        """Input pixels on each side that can influence an output pixel (head + blocks + tail +
        bicubic's 2-px support)."""
        return 1 + 2 * self.blocks + 1 + 2


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.relu(self.c1(x)))


def _keys(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel (1981) with a = −0.75, the one ``F.interpolate`` uses."""
    t = np.abs(t)
    return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                    np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))


def bicubic_phase_filters(scale: int) -> torch.Tensor:
    """Bicubic ×``scale`` as a 5×5 depthwise convolution to ``scale²`` phases per channel.

    Output pixel ``i·s + r`` samples the input at ``i + t_r`` with ``t_r = (r + ½)/s − ½``
    (half-pixel centers, ``align_corners=False``) from the 4 taps around it, all within ±2 px.
    Followed by ``pixel_shuffle(s)`` on a replicate-padded input this equals
    ``F.interpolate(x, scale_factor=s, mode="bicubic")`` but runs at the input resolution
    (measured 4× faster at 256² → 1024² on one core) and can share the tail's shuffle.
    Returns weights (4·s², 1, 5, 5) for ``conv2d(..., groups=4)``.
    """
    rows = np.zeros((scale, 5))
    for r in range(scale):
        t = (r + 0.5) / scale - 0.5
        for j in range(int(np.floor(t)) - 1, int(np.floor(t)) + 3):
            rows[r, j + 2] = _keys(np.array(t - j))
    phases = np.einsum("ya,xb->yxab", rows, rows).reshape(scale * scale, 1, 5, 5)
    return torch.from_numpy(np.tile(phases, (4, 1, 1, 1))).float()


class UpscaleNet(nn.Module):
    """EDSR-lite with one sub-pixel tail per scale (see the module docstring)."""

    def __init__(self, cfg: UpscaleConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.head = nn.Conv2d(4, c, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(c) for _ in range(cfg.blocks)])
        self.tails = nn.ModuleDict({f"x{s}": nn.Sequential(nn.Conv2d(c, 4 * s * s, 3, padding=1), nn.PixelShuffle(s))
                                    for s in cfg.scales})
        for s, tail in zip(cfg.scales, self.tails.values()):  # start as plain bicubic: the residual begins at zero
            nn.init.zeros_(tail[0].weight)
            nn.init.zeros_(tail[0].bias)
            self.register_buffer(f"bicubic_x{s}", bicubic_phase_filters(s), persistent=False)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Premultiplied RGBA (B, 4, h, w) in [0, 1] → (B, 4, s·h, s·w), not clamped.

        Everything before the final shuffle runs at the input resolution: the residual
        (tail conv) plus the bicubic base (phase filters), both as 4·s² sub-pixel channels.
        """
        f = self.head(x)
        f = f + self.body(f)
        tail = self.tails[f"x{scale}"]
        base = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), getattr(self, f"bicubic_x{scale}"), groups=4)
        # Where bicubic's taps are all transparent, the result is transparent: biases alone
        # would otherwise paint a faint haze over empty areas.
        support = F.max_pool2d((x[:, 3:4] > 0).to(x.dtype), 5, stride=1, padding=2)
        return tail[1]((tail[0](f) + base) * support)


class UpscaleModel:
    """The loaded upscaler: network + config; :meth:`upscale` works on straight-alpha pixels."""

    def __init__(self, cfg: UpscaleConfig, net: UpscaleNet | None = None, extra: dict | None = None):
        self.cfg = cfg
        self.net = (net or UpscaleNet(cfg)).eval()
        self.extra = extra or {}

    @classmethod
    def random(cls, cfg: UpscaleConfig, *, seed: int) -> "UpscaleModel":
        """Random weights from ``seed`` with non-zero tails (tests: an untrained net that is not bicubic)."""
        torch.manual_seed(seed)
        net = UpscaleNet(cfg)
        for tail in net.tails.values():
            nn.init.normal_(tail[0].weight, std=0.02)
        return cls(cfg, net)

    def param_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def save_pretrained(self, directory: Path, *, dtype: torch.dtype = torch.float16, extra: dict | None = None) -> Path:
        """Write ``model.safetensors`` (``dtype``) and ``config.json`` atomically; returns the weights path."""
        state = {k: v.to(dtype) for k, v in self.net.state_dict().items()}
        meta = {"model_id": MODEL_ID, "upscale": asdict(self.cfg), **(extra if extra is not None else self.extra)}
        return save_weights_folder(directory, state, meta, tag=MODEL_ID)

    @classmethod
    def from_pretrained(cls, directory: Path) -> "UpscaleModel":
        """Load what :meth:`save_pretrained` wrote (safetensors only; computes in float32)."""
        loaded = load_network(directory, section="upscale", config_class=UpscaleConfig, build=UpscaleNet,
                              what="upscaler", how_to_make=(
                                  "train one with `strata train upscale`, then `strata train upscale --export`"))
        return cls(loaded.cfg, loaded.net, loaded.record)

    @torch.no_grad()
    def upscale_premultiplied(self, premul: np.ndarray, scale: int) -> np.ndarray:
        """One piece, no tiling: premultiplied (h, w, 4) float32 → (s·h, s·w, 4), not clamped."""
        x = torch.from_numpy(np.ascontiguousarray(premul.transpose(2, 0, 1)))[None]
        y = self.net(x.contiguous(memory_format=torch.channels_last), scale)
        return y[0].permute(1, 2, 0).contiguous().numpy()

    def upscale(self, pixels: np.ndarray, scale: int, *, tile: int = 256, overlap: int = 24) -> np.ndarray:
        """Straight-alpha RGBA (H, W, 4) float32 → (s·H, s·W, 4) straight alpha in [0, 1].

        Args:
            scale: 2 or 4 (any of ``cfg.scales``).
            tile: tile side in input pixels (memory ∝ tile²).
            overlap: context on each side of a tile, input px; tiles cross-fade over overlap/2.
        """
        from strata.ops.edit import premultiply, unpremultiply

        if scale not in self.cfg.scales:
            raise ModelError(f"this upscaler has scales {list(self.cfg.scales)}, not {scale}")
        opaque = bool(pixels[:, :, 3].min() >= 1.0)
        source = np.ascontiguousarray(pixels, np.float32) if opaque else premultiply(pixels)
        out = tiled(lambda a: self.upscale_premultiplied(a, scale), source, scale, tile=tile, overlap=overlap)
        if opaque:
            out[:, :, 3] = 1.0
            return np.clip(out, 0.0, 1.0, out=out)
        return unpremultiply(out)


def _ramp(n_out: int, scale: int, lo: int, hi: int, band: int, length: int, start_out: int) -> np.ndarray:
    """1-D weights for output samples ``start_out .. start_out + n_out`` of a tile whose core
    covers input ``[lo, hi)`` of ``length``: 1 inside, a linear cross-fade over ``±band`` input
    px at every interior edge (the neighbour's weight is 1 − this, so weights sum to 1)."""
    centers = (np.arange(start_out, start_out + n_out) + 0.5) / scale  # in input coordinates
    w = np.ones(n_out, np.float32)
    for edge, rising in ((lo, True), (hi, False)):
        if 0 < edge < length:
            if band > 0:
                t = np.clip((centers - (edge - band)) / (2 * band), 0.0, 1.0)
            else:
                t = (centers >= edge).astype(np.float64)
            w *= (t if rising else 1.0 - t).astype(np.float32)
    return w


def _splits(length: int, tile: int) -> list[int]:
    """Boundaries of ``ceil(length / tile)`` near-equal cores covering ``[0, length)``."""
    n = -(-length // tile)
    return [round(i * length / n) for i in range(n + 1)]


def tiled(fn: Callable[[np.ndarray], np.ndarray], array: np.ndarray, scale: int, *, tile: int,
          overlap: int) -> np.ndarray:
    """``fn`` (an (h, w, C) → (s·h, s·w, C) map) applied to ``array`` in overlapping tiles.

    The input is cut into a grid of near-equal cores no larger than ``tile``; each core is run
    with ``overlap`` px of context on every side (less at the image border, where ``fn``'s own
    padding applies as it would untiled) and its output is used over the core ± ``overlap // 2``,
    cross-faded linearly with its neighbours. Pixels then sit ≥ overlap/2 from any cut, so if
    that covers ``fn``'s receptive radius the result equals ``fn(array)``. Peak memory: one
    tile's input and output plus the full result.
    """
    if tile < 1 or overlap < 0 or 2 * overlap > tile:
        raise ModelError(f"tile {tile} and overlap {overlap}: need tile ≥ 1 and 0 ≤ overlap ≤ tile / 2")
    h, w, c = array.shape
    band = overlap // 2
    ys, xs = _splits(h, tile), _splits(w, tile)
    if len(ys) == 2 and len(xs) == 2:
        return fn(array)
    out = np.zeros((h * scale, w * scale, c), np.float32)
    for y0, y1 in zip(ys, ys[1:]):
        for x0, x1 in zip(xs, xs[1:]):
            # region read (core + context) and region written (core + cross-fade band)
            ry0, ry1, rx0, rx1 = max(0, y0 - overlap), min(h, y1 + overlap), max(0, x0 - overlap), min(w, x1 + overlap)
            wy0, wy1, wx0, wx1 = max(0, y0 - band), min(h, y1 + band), max(0, x0 - band), min(w, x1 + band)
            result = fn(array[ry0:ry1, rx0:rx1])
            piece = result[(wy0 - ry0) * scale:(wy1 - ry0) * scale, (wx0 - rx0) * scale:(wx1 - rx0) * scale]
            wy = _ramp(piece.shape[0], scale, y0, y1, band, h, wy0 * scale)
            wx = _ramp(piece.shape[1], scale, x0, x1, band, w, wx0 * scale)
            out[wy0 * scale:wy1 * scale, wx0 * scale:wx1 * scale] += piece * (wy[:, None, None] * wx[None, :, None])
    return out
