"""The user's own models: ``strata models add NAME PATH`` entries, kept in ``$STRATA_CONFIG/models.json``.

Each entry records the path, its architecture and capabilities, the memory it needs and the
hash of its files (with their sizes and modification times, so a listing does not rehash
gigabytes; a changed file is rehashed). Adding inspects the model first
(:func:`strata.models.diffusers_models.inspect_checkpoint`) and writes the file atomically, so
a failed add leaves the list as it was. The default registry offers every entry next to the
built-in models.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from strata.errors import ModelError
from strata.files import atomic_write_bytes
from strata.models.registry import ModelEntry, ModelRegistry, builtin

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def models_file() -> Path:
    from strata.provenance.credentials import config_dir

    return config_dir() / "models.json"


@dataclass
class UserModel:
    """One registered model (what ``models.json`` holds per entry)."""

    name: str
    path: str
    format: str
    arch: str
    capabilities: list[str]
    unet_in_channels: int
    param_count: int
    unet_params: int
    memory_bytes: int
    files: list[list[Any]]  # [path, size, mtime_ns]
    hash: str
    trust_pickle: bool = False
    config: str | None = None  # diffusers config folder for single files (None: the shipped one)
    extra: dict[str, Any] = field(default_factory=dict)

    def size_on_disk(self) -> int:
        return sum(int(f[1]) for f in self.files)

    def info(self) -> "Any":
        from strata.models.diffusers_models import CheckpointInfo

        return CheckpointInfo(Path(self.path), self.format, self.arch, self.unet_in_channels,
                              tuple(Path(f[0]) for f in self.files), self.param_count, self.unet_params,
                              self.trust_pickle)


def load_user_models() -> dict[str, UserModel]:
    """Name → entry; an unreadable file is an error naming it (never silently empty)."""
    path = models_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {m["name"]: UserModel(**m) for m in data.get("models", [])}
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelError(f"{path} is damaged ({exc}); fix or delete it (it only lists your own models)") from None


def _save(models: dict[str, UserModel]) -> None:
    payload = {"version": 1, "models": [asdict(m) for m in models.values()]}
    atomic_write_bytes(models_file(), (json.dumps(payload, indent=2) + "\n").encode())


def _stat(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def add_user_model(name: str, path: str | Path, *, trust_pickle: bool = False, config: str | Path | None = None,
                   builtin_ids: set[str] | None = None) -> UserModel:
    """Inspect ``path``, hash it and register it as ``name``.

    Args:
        name: 1..64 letters, digits, ``.``, ``_`` or ``-``; not a built-in model's id nor taken.
        path: a diffusers pipeline folder or a single-file checkpoint.
        trust_pickle: allow pickled weights (loaded with ``weights_only=True``).
        config: for single files, a diffusers-format folder with the configs/tokenizer to use.
        builtin_ids: ids the name must not shadow.

    Raises:
        ModelError: bad name, taken name, or a path that is not a loadable model.
    """
    from strata.models.diffusers_models import config_files, inspect_checkpoint, single_file_config
    from strata.models.registry import combined_hash

    if not NAME_RE.match(name):
        raise ModelError(f"model name {name!r} is not allowed; use 1-64 letters, digits, '.', '_' or '-' "
                         "(starting with a letter or digit)")
    models = load_user_models()
    if name in models or name in (builtin_ids or set()):
        raise ModelError(f"a model named '{name}' is already registered; `strata models rm {name}` first or pick "
                         "another name")
    info = inspect_checkpoint(path, trust_pickle=trust_pickle)
    files = list(info.files)
    config_path = None
    if info.format == "single-file":
        # the configs and tokenizer shape the output as much as the weights: they are hashed too
        folder = single_file_config(info, config)
        files += config_files(folder)
        config_path = folder if config is not None else None
    elif config is not None:
        raise ModelError("--config is only for single-file checkpoints; a pipeline folder has its own configs")
    entry = UserModel(
        name=name, path=str(info.path), format=info.format, arch=info.arch,
        capabilities=sorted(info.capabilities), unet_in_channels=info.unet_in_channels,
        param_count=info.param_count, unet_params=info.unet_params, memory_bytes=info.memory_bytes,
        files=[_stat(f) for f in files], hash=combined_hash(files), trust_pickle=info.pickled,
        config=str(config_path) if config_path else None,
    )
    models[name] = entry
    _save(models)
    return entry


def remove_user_model(name: str) -> UserModel:
    """Forget ``name`` (its files stay where they are)."""
    models = load_user_models()
    if name not in models:
        raise ModelError(f"no user model named '{name}'; `strata models` lists them")
    entry = models.pop(name)
    _save(models)
    return entry


def _current_hash(model: UserModel) -> str | None:
    """The recorded hash if every file still has its recorded size and mtime, else None (rehash)."""
    for path, size, mtime in model.files:
        try:
            st = Path(path).stat()
        except OSError:
            return None
        if st.st_size != size or st.st_mtime_ns != mtime:
            return None
    return model.hash


def registry_entry(model: UserModel) -> ModelEntry:
    """The registry entry for ``model`` (loading builds its diffusers pipeline)."""
    from strata.models import diffusers_models

    def loader(files: list[Path]) -> Any:
        return diffusers_models.load_model(model.name, model.info(),
                                           config_dir=Path(model.config) if model.config else None)

    entry = ModelEntry(model.name, set(model.capabilities), [Path(f[0]) for f in model.files], loader,
                       size_bytes=model.memory_bytes, trust_pickle=model.trust_pickle,
                       info={"arch": model.arch, "format": model.format, "path": model.path,
                             "unet_params": model.unet_params})
    entry._hash = _current_hash(model)
    return entry


@builtin
def register_user_models(registry: ModelRegistry) -> None:
    for model in load_user_models().values():
        if model.name not in registry.entries:  # a built-in id always wins
            registry.add(registry_entry(model))
