"""The built-in text-image scorer: how well an image shows a prompt, as a cosine similarity.

CLIP-style (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision", §2.3 and Fig. 3): an image encoder and a text encoder map into one space; their
cosine similarity is the agreement score. Here the text side is the frozen all-MiniLM-L6-v2
sentence encoder the image model already uses (its mean-pooled sentence vector, 384-d) followed
by a small learned linear map that starts as the identity, so the space is MiniLM's sentence
space, nudged. The image side is trained here (``strata train scorer``) to land each picture
near its captions in that space; a learned temperature scales the cosines into logits for the
symmetric InfoNCE loss (CLIP's pseudo-code, Fig. 3) while training.

Image encoder (why this one): a small CNN on *premultiplied* RGBA at 32×32 — emoji stay
recognizable at 32², it is 4× cheaper than 64², and premultiplied color cannot carry garbage
from under transparent pixels. Three conv-BN-ReLU ×2 + max-pool stages (32 → 16 → 8 → 4),
global average pool, linear to 384 — the shape of ``bench/quality.py``'s classifier, wider,
because it must place ~1,900 concepts in a continuous space instead of picking one of 100.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from strata.errors import ModelError
from strata.models.builtin import SCORER
from strata.models.weights_folder import config_from_dict, load_network, save_weights_folder

MODEL_ID = SCORER.id  # the registry's name for it (models/builtin.py)
CAPABILITY = SCORER.capability


@dataclass(frozen=True)
class ScorerConfig:
    """Shape of the scorer (the constructor is the config; it round-trips through JSON).

    Args:
        input_size: side the image is resized to before the CNN (32).
        channels: CNN width per stage; each stage halves the resolution.
        embed_dim: the joint space's width (384, MiniLM's sentence vector).
        text_dim: width of the text encoder's pooled vector (384 for MiniLM).
    """

    input_size: int = 32
    channels: tuple[int, ...] = (32, 64, 128)
    embed_dim: int = 384
    text_dim: int = 384

    @classmethod
    def from_dict(cls, d: dict) -> "ScorerConfig":
        """Build from a (JSON) dict; lists become tuples, unknown keys are an error."""
        return config_from_dict(cls, d, "scorer")


def premultiplied_input(rgba: torch.Tensor, size: int) -> torch.Tensor:
    """Straight-alpha RGBA in [0, 1], (B, 4, H, W) → premultiplied, in [-1, 1], area-resized to size²."""
    x = torch.cat([rgba[:, :3] * rgba[:, 3:4], rgba[:, 3:4]], dim=1) * 2.0 - 1.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="area")
    return x


class ImageEncoder(nn.Module):
    """The CNN of the module docstring: premultiplied RGBA in [-1, 1] at ``input_size``², (B, 4, s, s)
    (see :func:`premultiplied_input`) → unnormalized (B, embed_dim)."""

    def __init__(self, cfg: ScorerConfig):
        super().__init__()
        self.cfg = cfg
        stages, width = [], 4
        for c in cfg.channels:
            stages.append(nn.Sequential(nn.Conv2d(width, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                        nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)))
            width = c
        self.features = nn.Sequential(*stages)
        self.head = nn.Linear(width, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class ScorerNet(nn.Module):
    """Image encoder + text projection + temperature: everything the scorer learns."""

    def __init__(self, cfg: ScorerConfig):
        super().__init__()
        self.cfg = cfg
        self.image = ImageEncoder(cfg)
        self.text_proj = nn.Linear(cfg.text_dim, cfg.embed_dim)
        with torch.no_grad():  # start in MiniLM's own space: identity (padded or cut if widths differ)
            self.text_proj.weight.copy_(torch.eye(cfg.embed_dim, cfg.text_dim))
            self.text_proj.bias.zero_()
        # CLIP initializes the temperature at 0.07 and learns its log (Radford et al. 2021, §2.5).
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def embed_images(self, rgba: torch.Tensor) -> torch.Tensor:
        """Unit vectors (B, embed_dim) for straight-alpha RGBA (B, 4, H, W) in [0, 1]."""
        return F.normalize(self.image(premultiplied_input(rgba, self.cfg.input_size)), dim=-1)

    def embed_text(self, pooled: torch.Tensor) -> torch.Tensor:
        """Unit vectors (B, embed_dim) for MiniLM pooled sentence vectors (B, text_dim)."""
        return F.normalize(self.text_proj(pooled), dim=-1)

    def temperature_scale(self) -> torch.Tensor:
        """exp(logit_scale), clipped at 100 as CLIP does (keeps the logits from exploding)."""
        return self.logit_scale.exp().clamp(max=100.0)


def info_nce(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor,
             positives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP, Fig. 3) over a batch of unit vectors.

    Args:
        image_emb, text_emb: (B, D) unit vectors; row i of each is a matching pair.
        scale: the temperature's inverse (logits = scale · cosine).
        positives: optional (B, B) bool, ``[i, j]`` true when text j also describes image i
            (the same concept drawn by another source); each row's target then spreads evenly
            over its positives instead of treating them as negatives. Default: the diagonal.
    """
    logits = scale * image_emb @ text_emb.T
    if positives is None:
        target = torch.arange(len(logits))
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    p = positives.float()
    return 0.5 * (F.cross_entropy(logits, p / p.sum(1, keepdim=True))
                  + F.cross_entropy(logits.T, p.T / p.T.sum(1, keepdim=True)))


class PooledTextEncoder:
    """MiniLM prompts → mean-pooled sentence vectors (B, 384): the sentence-transformers pooling,
    the vector the image model puts first in its text context.

    The image model's :class:`~strata.models.image_diffusion.TextEncoder` loads MiniLM; prompts
    are encoded here padded only to the longest in each batch of similar lengths (its token
    states are padded to a fixed length, which cost 4× the time for 35,000 short captions).
    """

    def __init__(self, path: str | Path | None = None, max_tokens: int = 32):
        from strata.models.image_diffusion import ImageDiffusionConfig, TextEncoder

        self.encoder = TextEncoder(ImageDiffusionConfig(text_tokens=max_tokens, pooled_repeats=1), path)
        self.max_tokens = max_tokens

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        tokenizer = self.encoder.tokenizer
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out = torch.zeros(len(prompts), self.encoder.hidden_size)
        for start in range(0, len(order), 256):
            idx = order[start:start + 256]
            tok = tokenizer([prompts[i] for i in idx], padding="longest", truncation=True,
                            max_length=self.max_tokens, return_tensors="pt")
            states = self.encoder.token_states(tok["input_ids"], tok["attention_mask"])
            mask = tok["attention_mask"].to(states.dtype)[..., None]
            out[idx] = (states * mask).sum(1) / mask.sum(1)
        return out


class Scorer:
    """The scorer as a model object: :meth:`score` images against a prompt.

    Args:
        cfg: its shape.
        net: the learned part (random if None).
        extra: what the config file says beside the shape (its training record).
        text: the frozen text encoder, anything with ``encode(prompts) -> (B, text_dim)``;
            MiniLM is loaded on first use when None (the CNN alone loads in milliseconds).
    """

    def __init__(self, cfg: ScorerConfig, net: ScorerNet | None = None, extra: dict | None = None,
                 text: Any = None):
        self.cfg = cfg
        self.net = (net or ScorerNet(cfg)).eval()
        self.extra = extra or {}
        self.text = text

    @classmethod
    def random(cls, cfg: ScorerConfig, *, seed: int, text: Any = None) -> "Scorer":
        """Random weights from ``seed`` (tests)."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = ScorerNet(cfg)
        return cls(cfg, net, text=text)

    def text_encoder(self) -> Any:
        if self.text is None:
            self.text = PooledTextEncoder()
        return self.text

    @torch.no_grad()
    def embed_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Unit vectors (len(prompts), embed_dim)."""
        return self.net.embed_text(self.text_encoder().encode(list(prompts)).float())

    @torch.no_grad()
    def embed_images(self, images: list[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """Unit vectors (N, embed_dim) for straight-alpha RGBA images: (H, W, 4) float arrays in
        [0, 1] (any sizes), or one (N, 4, H, W) tensor."""
        if isinstance(images, torch.Tensor):
            return torch.cat([self.net.embed_images(images[i:i + 256].float()) for i in range(0, len(images), 256)])
        out = []
        for pixels in images:
            if pixels.ndim != 3 or pixels.shape[2] != 4:
                raise ModelError(f"the scorer takes RGBA images (H, W, 4); got shape {tuple(pixels.shape)}")
            x = torch.tensor(np.asarray(pixels, np.float32)).permute(2, 0, 1)[None]  # a copy: pixels may be read-only
            out.append(self.net.embed_images(x))
        return torch.cat(out) if out else torch.zeros(0, self.cfg.embed_dim)

    def score(self, images: list[np.ndarray] | torch.Tensor, prompt: str) -> np.ndarray:
        """Cosine similarity in [-1, 1] of each image with ``prompt`` (higher = agrees more).

        Args:
            images: straight-alpha RGBA, as for :meth:`embed_images`.
            prompt: the text, non-empty.

        Returns:
            float64 array (N,).
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise ModelError("the scorer needs a non-empty prompt to compare the images with")
        text = self.embed_prompts([prompt])[0]
        return (self.embed_images(images) @ text).double().numpy()

    def param_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def save_pretrained(self, directory: Path, *, dtype: torch.dtype = torch.float16, extra: dict | None = None) -> Path:
        """Write ``model.safetensors`` (``dtype``; BatchNorm step counters stay int) and ``config.json``."""
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in self.net.state_dict().items()}
        meta = {"model_id": MODEL_ID, "scorer": asdict(self.cfg), **(extra if extra is not None else self.extra)}
        return save_weights_folder(directory, state, meta, tag=MODEL_ID)

    @classmethod
    def from_pretrained(cls, directory: Path, *, text: Any = None) -> "Scorer":
        """Load what :meth:`save_pretrained` wrote (safetensors only; computes in float32)."""
        loaded = load_network(directory, section="scorer", config_class=ScorerConfig, build=ScorerNet,
                              what="scorer", how_to_make=(
                                  "train one with `strata train scorer`, then `strata train scorer --export`"))
        return cls(loaded.cfg, loaded.net, loaded.record, text=text)


__all__ = ["CAPABILITY", "MODEL_ID", "ImageEncoder", "PooledTextEncoder", "Scorer", "ScorerConfig", "ScorerNet",
           "info_nce"]
