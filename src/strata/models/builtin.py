"""strata's built-in models, registered with the default registry when their weights exist.

The text-to-image model's weights ship in ``weights/image/`` (``unet.safetensors`` + its
``config.json``, and the ``autoencoder.*`` whose latent it works in); ``STRATA_IMAGE_MODEL=/path/to/dir`` points at another export (e.g. a newer
training export, or a tiny model in tests).

The upscaler (``strata-upscale``, capability "upscale") ships in ``weights/upscale/``;
``STRATA_UPSCALE_MODEL=/path/to/dir`` overrides it.

The music model (``strata-chorales``, capability "music") ships in ``weights/music/``
(``model.safetensors`` + ``config.json``); ``STRATA_MUSIC_MODEL=/path/to/dir`` overrides it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from strata.models.registry import ModelEntry, ModelRegistry, builtin
from strata.models.weights_folder import CONFIG_NAME, WEIGHTS_NAME

REPO_WEIGHTS = Path(__file__).resolve().parents[3] / "weights"
IMAGE_MODEL_ID = "strata-emoji-64"


def image_model_dir() -> Path:
    return Path(os.environ.get("STRATA_IMAGE_MODEL", REPO_WEIGHTS / "image"))


def _load_image_model(files: list[Path]) -> Any:
    from strata.models.image_diffusion import ImageDiffusionModel

    return ImageDiffusionModel.from_pretrained(files[0].parent)


@builtin
def register_image_model(registry: ModelRegistry) -> None:
    directory = image_model_dir()
    weights, config = directory / "unet.safetensors", directory / "config.json"
    if weights.is_file() and config.is_file():
        files = [weights, config]
        autoencoder = directory / "autoencoder.safetensors"
        if autoencoder.is_file():  # part of the model: its hash must name the model too
            files += [autoencoder, directory / "autoencoder.json"]
        capabilities = {"text-to-image", "image-to-image"}
        if json.loads(config.read_text(encoding="utf-8")).get("model", {}).get("inpaint"):
            capabilities.add("inpaint")  # trained with a mask input (train/configs/image_inpaint.yaml)
        # The frozen MiniLM text encoder (~90 MB in memory) comes with the model.
        registry.add(ModelEntry(IMAGE_MODEL_ID, capabilities, files, _load_image_model,
                                size_bytes=sum(f.stat().st_size for f in files) * 2 + 100 * 2**20))


def music_model_dir() -> Path:
    """``$STRATA_MUSIC_MODEL`` or ``weights/music`` (written by ``strata train music --export``)."""
    return Path(os.environ.get("STRATA_MUSIC_MODEL", REPO_WEIGHTS / "music"))


def upscale_model_dir() -> Path:
    """``$STRATA_UPSCALE_MODEL`` or ``weights/upscale`` (written by ``strata train upscale --export``)."""
    return Path(os.environ.get("STRATA_UPSCALE_MODEL", REPO_WEIGHTS / "upscale"))


@builtin
def register_weights_folder_models(registry: ModelRegistry) -> None:
    """The music model and the upscaler, each a weights folder (:mod:`strata.models.weights_folder`),
    registered when both its files exist and built from the folder when first used."""
    from strata.models.music_model import MODEL_ID as MUSIC_ID
    from strata.models.music_model import MusicModel
    from strata.models.upscale import MODEL_ID as UPSCALE_ID
    from strata.models.upscale import UpscaleModel

    # Memory when loaded: fp16 on disk is float32 in memory (×2), plus the module around the
    # weights (GPT-2's own ~20 MB; torch's working memory for an upscale tile, ~50 MB).
    folders: list[tuple[str, str, Path, Callable[[Path], Any], int]] = [
        (MUSIC_ID, "music", music_model_dir(), MusicModel.from_pretrained, 20 * 2**20),
        (UPSCALE_ID, "upscale", upscale_model_dir(), UpscaleModel.from_pretrained, 50 * 2**20),
    ]
    for model_id, capability, directory, load, overhead_bytes in folders:
        files = [directory / WEIGHTS_NAME, directory / CONFIG_NAME]
        if all(f.is_file() for f in files):
            registry.add(ModelEntry(model_id, {capability}, files, lambda fs, load=load: load(fs[0].parent),
                                    size_bytes=files[0].stat().st_size * 2 + overhead_bytes))


def scorer_model_dir() -> Path:
    """``$STRATA_SCORER_MODEL`` or ``weights/scorer`` (written by ``strata train scorer --export``)."""
    return Path(os.environ.get("STRATA_SCORER_MODEL", REPO_WEIGHTS / "scorer"))


@builtin
def register_scorer(registry: ModelRegistry) -> None:
    """The text-image scorer (``strata-scorer``, capability "image-text-score"), a weights folder;
    the frozen MiniLM it compares with is loaded on its first prompt (~90 MB in memory)."""
    from strata.models.scorer import CAPABILITY, MODEL_ID, Scorer

    directory = scorer_model_dir()
    files = [directory / WEIGHTS_NAME, directory / CONFIG_NAME]
    if all(f.is_file() for f in files):
        registry.add(ModelEntry(MODEL_ID, {CAPABILITY}, files, lambda fs: Scorer.from_pretrained(fs[0].parent),
                                size_bytes=files[0].stat().st_size * 2 + 100 * 2**20))
