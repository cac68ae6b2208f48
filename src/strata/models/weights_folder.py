"""A model's folder on disk: its weights as safetensors plus a JSON config, the one layout the
built-in models ship in (``model.safetensors`` + ``config.json`` by default).

Both files are written atomically (a reader sees the old file or the whole new one), and weights
are only ever read as safetensors, which holds plain tensors: loading runs no pickled code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from strata.errors import ModelError
from strata.files import atomic_write_bytes

if TYPE_CHECKING:  # torch is imported by the loaders, not by registering a folder's names
    import torch

T = TypeVar("T")
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def config_from_dict(cls: type[T], d: dict[str, Any], what: str) -> T:
    """A model's config dataclass from its JSON dict: lists become tuples, unknown keys are an error.

    Raises:
        ModelError: keys the dataclass does not have (a config from a newer strata, or a typo).
    """
    extra = set(d) - set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    if extra:
        raise ModelError(f"unknown {what} config keys {sorted(extra)}; is the config from a newer strata?")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def save_weights_folder(directory: str | Path, state: dict[str, torch.Tensor], config: dict[str, Any], *,
                        tag: str, weights_name: str = WEIGHTS_NAME,
                        config_name: str = CONFIG_NAME) -> Path:
    """Write ``state`` as ``directory/weights_name`` and ``config`` as ``directory/config_name``.

    Args:
        directory: the model's folder; created if missing.
        state: tensor name → tensor, stored as they are (convert dtype before calling).
        config: JSON-serializable description the loader rebuilds the model from (indented,
            one trailing newline: diff-friendly in the repository).
        tag: stored in the safetensors metadata as ``strata`` (which model wrote the file).
        weights_name, config_name: the two file names.

    Returns:
        The weights file's path.
    """
    from safetensors.torch import save

    directory = Path(directory)
    weights = directory / weights_name
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    atomic_write_bytes(weights, save(tensors, metadata={"format": "pt", "strata": tag}))
    atomic_write_bytes(directory / config_name, (json.dumps(config, indent=2) + "\n").encode("utf-8"))
    return weights


def load_weights_folder(directory: str | Path, *, what: str, how_to_make: str,
                        weights_name: str = WEIGHTS_NAME,
                        config_name: str = CONFIG_NAME) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    """Read what :func:`save_weights_folder` wrote: ``(config, float32 state, weights path)``.

    Args:
        directory: the model's folder.
        what: the model's name in the error message ("music model", "upscaler", ...).
        how_to_make: the command(s) that produce the folder, for the error message.

    Raises:
        ModelError: a file is missing (the message names both files and ``how_to_make``).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg_path, w_path = directory / config_name, directory / weights_name
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelError(f"no {what} in {directory}: expected {config_name} and {weights_name}; {how_to_make}")
    config = json.loads(cfg_path.read_text(encoding="utf-8"))
    state = {k: v.float() for k, v in load_file(str(w_path)).items()}
    return config, state, w_path


def load_state(net: torch.nn.Module, state: dict[str, torch.Tensor], w_path: Path, *, tied: tuple[str, ...] = ()) -> None:
    """Load ``state`` (from ``w_path``) into ``net``; every key must match in name and shape, except
    the ``tied`` keys that may be absent (weights stored once, tied again by the caller).

    Raises:
        ModelError: the file does not match the network its config describes (names the file and
            the first mismatching keys or shapes).
    """
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a shape mismatch
        raise ModelError(f"{w_path} does not match its config: {str(exc)[:200]}") from exc
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ModelError(f"{w_path} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}")


@dataclass(frozen=True)
class LoadedNetwork:
    """A network read from a weights folder by :func:`load_network`."""

    cfg: Any  # the network's config (``config_class``)
    net: torch.nn.Module  # in eval mode, float32
    record: dict[str, Any]  # the config file's other entries (how it was trained, ...)
    weights_path: Path


def load_network(directory: str | Path, *, section: str, config_class: Any, build: Callable[[Any], torch.nn.Module],
                 what: str, how_to_make: str, tied: tuple[str, ...] = (), weights_name: str = WEIGHTS_NAME,
                 config_name: str = CONFIG_NAME) -> LoadedNetwork:
    """Load what a model's ``save_pretrained`` wrote: ``config_class.from_dict`` of the config's
    ``section`` → ``build(cfg)`` → its weights (:func:`load_state`; ``tied`` keys may be absent).

    Raises:
        ModelError: a file is missing (:func:`load_weights_folder`) or does not match the config.
    """
    meta, state, w_path = load_weights_folder(directory, what=what, how_to_make=how_to_make,
                                              weights_name=weights_name, config_name=config_name)
    cfg = config_class.from_dict(meta[section])
    net = build(cfg)
    load_state(net, state, w_path, tied=tied)
    return LoadedNetwork(cfg, net.eval(), {k: v for k, v in meta.items() if k not in (section, "model_id")}, w_path)


__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "LoadedNetwork", "config_from_dict", "load_network", "load_state",
           "load_weights_folder", "save_weights_folder"]
