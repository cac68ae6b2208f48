"""strata's built-in models, registered with the default registry when their weights exist.

The text-to-image model's weights ship in ``weights/image/`` (``unet.safetensors`` + its
``config.json``, and the ``autoencoder.*`` whose latent it works in); ``STRATA_IMAGE_MODEL=/path/to/dir`` points at another export (e.g. a newer
training export, or a tiny model in tests).

The music model, the upscaler and the text-image scorer ship as weights folders
(``model.safetensors`` + ``config.json``) in ``weights/music/``, ``weights/upscale/`` and
``weights/scorer/``; ``STRATA_MUSIC_MODEL`` / ``STRATA_UPSCALE_MODEL`` / ``STRATA_SCORER_MODEL``
point at others (:data:`FOLDER_MODELS`).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from dataclasses import dataclass
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
        # fp16 files → fp32 in memory, twice (the torch UNet and ONNX Runtime's copy of it, see
        # models/unet_onnx.py), + the frozen MiniLM text encoder (~90 MB in memory).
        registry.add(ModelEntry(IMAGE_MODEL_ID, capabilities, files, _load_image_model,
                                size_bytes=sum(f.stat().st_size for f in files) * 4 + 100 * 2**20))


@dataclass(frozen=True)
class FolderModel:
    """A built-in model shipped as a weights folder (:mod:`strata.models.weights_folder`).

    Registering one reads only file names, never torch: a run that uses no model (or a rerun
    whose model nodes are cached) starts without importing it.
    """

    id: str
    capability: str
    env: str  # environment variable naming another folder (an export, a tiny test model)
    folder: str  # under weights/
    loader: str  # "module:Class"; the class has from_pretrained(directory) and is imported on first use
    overhead_bytes: int  # memory beyond the fp32 weights when loaded (the module around them)


# fp16 on disk is float32 in memory (×2), plus GPT-2's own ~20 MB, torch's working memory for an
# upscale tile (~50 MB), the MiniLM the scorer compares with (~100 MB).
MUSIC = FolderModel("strata-chorales", "music", "STRATA_MUSIC_MODEL", "music",
                    "strata.models.music_model:MusicModel", 20 * 2**20)
UPSCALE = FolderModel("strata-upscale", "upscale", "STRATA_UPSCALE_MODEL", "upscale",
                      "strata.models.upscale:UpscaleModel", 50 * 2**20)
SCORER = FolderModel("strata-scorer", "image-text-score", "STRATA_SCORER_MODEL", "scorer",
                     "strata.models.scorer:Scorer", 100 * 2**20)
FOLDER_MODELS = (MUSIC, UPSCALE, SCORER)


def folder_model_dir(model: FolderModel) -> Path:
    """``$<model.env>`` or ``weights/<model.folder>`` (where ``strata train <...> --export`` writes)."""
    return Path(os.environ.get(model.env, REPO_WEIGHTS / model.folder))


def music_model_dir() -> Path:
    return folder_model_dir(MUSIC)


def upscale_model_dir() -> Path:
    return folder_model_dir(UPSCALE)


def scorer_model_dir() -> Path:
    return folder_model_dir(SCORER)


def _load_folder(model: FolderModel, files: list[Path]) -> Any:
    module, _, cls = model.loader.partition(":")
    return getattr(importlib.import_module(module), cls).from_pretrained(files[0].parent)


@builtin
def register_weights_folder_models(registry: ModelRegistry) -> None:
    """The music model, the upscaler and the scorer: each registered when both its files exist."""
    for model in FOLDER_MODELS:
        directory = folder_model_dir(model)
        files = [directory / WEIGHTS_NAME, directory / CONFIG_NAME]
        if all(f.is_file() for f in files):
            registry.add(ModelEntry(model.id, {model.capability}, files, functools.partial(_load_folder, model),
                                    size_bytes=files[0].stat().st_size * 2 + model.overhead_bytes))
