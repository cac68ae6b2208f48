"""The model registry: models are reached by capability ("text-to-image", "upscale", ...).

Entries are declared with a capability, an id, the weights file(s) and a loader. The registry
hashes weights once (the hash is part of cache keys and provenance), loads lazily, keeps an
LRU of loaded models within a memory budget, and refuses pickled checkpoints: only
safetensors are loaded from files.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from strata.errors import ModelError
from strata.store.blobs import sha256_file
from strata.workflow.executor import ModelInfo

PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"}
# Capabilities an op can do without: when no installed model offers one and the node names none,
# identify() and load() return None (no model in the cache key; the op gets loaded_model=None
# and falls back). image.select ranks by technical measures alone without a text-image scorer.
OPTIONAL_CAPABILITIES = frozenset({"image-text-score"})
# What makes each capability available, said when none is installed.
INSTALL_HINTS = {
    "text-to-image": "the built-in model ships in weights/image (a fresh clone has it; $STRATA_IMAGE_MODEL points "
                     "elsewhere), or add an SD 1.x / SDXL model with `strata models add NAME PATH`",
    "image-to-image": "the built-in model (weights/image) or any `strata models add` text-to-image model does it",
    "inpaint": "built-in weights trained with a mask input (`strata train image --config "
               "src/strata/train/configs/image_inpaint.yaml`), or an SD inpainting model (9-channel UNet) "
               "added with `strata models add NAME PATH`",
    "music": "the chorale model ships in weights/music ($STRATA_MUSIC_MODEL points elsewhere); "
             "`strata train music --export` rebuilds it",
    "upscale": "the upscaler ships in weights/upscale ($STRATA_UPSCALE_MODEL points elsewhere); "
               "`strata train upscale --export` rebuilds it",
}
DEFAULT_BUDGET_BYTES = int(float(os.environ.get("STRATA_MODEL_BUDGET_GB", "8")) * 2**30)


@dataclass
class ModelEntry:
    """A model the registry can provide.

    Args:
        id: stable name (``strata-emoji-64``).
        capabilities: what it can do (``{"text-to-image"}``).
        files: weight files; their content hashes identify the model.
        loader: builds the model object from ``files`` (called lazily, once while cached).
        size_bytes: estimated memory when loaded (default: the files' size).
        trust_pickle: the user vouched for pickled files among ``files`` (``--trust-pickle``).
        info: facts for listings and callers (a user model's architecture, format, path).
    """

    id: str
    capabilities: set[str]
    files: list[Path]
    loader: Callable[[list[Path]], Any]
    size_bytes: int | None = None
    trust_pickle: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    _hash: str | None = field(default=None, repr=False)

    def weights_hash(self) -> str:
        if self._hash is None:
            for f in self.files:
                if not f.is_file():
                    raise ModelError(f"model '{self.id}': weights file {f} is missing; reinstall strata, re-export the "
                                     "weights (`strata train image --export`) or re-add your model (`strata models add`)")
                if f.suffix.lower() in PICKLE_SUFFIXES and not self.trust_pickle:
                    raise ModelError(f"model '{self.id}': {f.name} is a pickled checkpoint, which can run arbitrary "
                                     "code when loaded; convert it to .safetensors")
            self._hash = combined_hash(self.files)
        return self._hash

    def memory_bytes(self) -> int:
        return self.size_bytes if self.size_bytes is not None else sum(f.stat().st_size for f in self.files)


def combined_hash(files: list[Path]) -> str:
    """sha256 over the sorted files' sha256s: the identity of a model made of several files."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(files):
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def lora_hash(base_hash: str, loras: list[Any] | None) -> str:
    """The weights hash of a model with ``loras`` (dicts with path and scale) applied: the base
    hash when there are none, else a hash over it and each LoRA file's content and scale."""
    if not loras:
        return base_hash
    import hashlib

    h = hashlib.sha256(base_hash.encode())
    for lora in loras:
        path = Path(lora["path"] if isinstance(lora, dict) else lora.path)
        scale = float(lora.get("scale", 1.0) if isinstance(lora, dict) else lora.scale)
        if not path.is_file():
            raise ModelError(f"LoRA file {path} does not exist")
        h.update(f"|{sha256_file(path)}@{scale!r}".encode())
    return h.hexdigest()


class ModelRegistry:
    """Capability → model entries, with a lazily-loaded LRU under a memory budget."""

    def __init__(self, *, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.entries: dict[str, ModelEntry] = {}
        self.budget_bytes = budget_bytes
        self._loaded: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, entry: ModelEntry) -> None:
        self.entries[entry.id] = entry

    def find(self, capability: str, model_id: str | None = None) -> ModelEntry:
        """The entry for ``model_id``, or the first one offering ``capability``."""
        if model_id:
            entry = self.entries.get(model_id)
            if entry is None:
                raise ModelError(f"unknown model '{model_id}'; known: {', '.join(self.entries) or 'none'}")
            if capability not in entry.capabilities:
                raise ModelError(f"model '{model_id}' cannot do {capability} (it can: {', '.join(sorted(entry.capabilities))})")
            return entry
        for entry in self.entries.values():
            if capability in entry.capabilities:
                return entry
        hint = INSTALL_HINTS.get(capability)
        raise ModelError(f"no installed model can do '{capability}'; `strata models` lists what is installed"
                         + (f". To get one: {hint}" if hint else ""))

    def _absent_optional(self, capability: str, params: dict[str, Any]) -> bool:
        return (capability in OPTIONAL_CAPABILITIES and not params.get("model")
                and not any(capability in e.capabilities for e in self.entries.values()))

    def identify(self, capability: str, params: dict[str, Any]) -> ModelInfo | None:
        """The model's id and weights hash; LoRAs in ``params["lora"]`` are part of the hash
        (so the cache key changes with a LoRA file's content). None for an optional capability
        no installed model offers (:data:`OPTIONAL_CAPABILITIES`)."""
        if self._absent_optional(capability, params):
            return None
        entry = self.find(capability, params.get("model"))
        return ModelInfo(entry.id, lora_hash(entry.weights_hash(), params.get("lora")))

    def load(self, capability: str, params: dict[str, Any]) -> Any:
        if self._absent_optional(capability, params):
            return None
        entry = self.find(capability, params.get("model"))
        with self._lock:
            if entry.id in self._loaded:
                self._loaded.move_to_end(entry.id)
                return self._loaded[entry.id]
            need = entry.memory_bytes()
            if need > self.budget_bytes:
                raise ModelError(f"model '{entry.id}' needs ~{need / 2**30:.1f} GB, over the memory budget of "
                                 f"{self.budget_bytes / 2**30:.1f} GB; raise STRATA_MODEL_BUDGET_GB if the machine has room")
            while self._loaded and self._used() + need > self.budget_bytes:
                self._loaded.popitem(last=False)  # least recently used goes first
            entry.weights_hash()  # refuses pickles and missing files before any loading
            model = entry.loader(entry.files)
            self._loaded[entry.id] = model
            return model

    def _used(self) -> int:
        return sum(self.entries[i].memory_bytes() for i in self._loaded)


_DEFAULT: ModelRegistry | None = None


def reset_default_registry() -> None:
    """Forget the default registry (tests, or after installing new weights)."""
    global _DEFAULT
    _DEFAULT = None


def default_registry() -> ModelRegistry:
    """The process-wide registry with strata's built-in models (those whose weights exist)."""
    global _DEFAULT
    if _DEFAULT is None:
        import strata.models.builtin  # noqa: F401  (@builtin functions register themselves on import)
        import strata.models.speech  # noqa: F401
        import strata.models.user_models  # noqa: F401  (the user's own models, `strata models add`)

        _DEFAULT = ModelRegistry()
        for register in _BUILTIN_REGISTRARS:
            register(_DEFAULT)
    return _DEFAULT


# Functions that add built-in model entries; model modules append to this.
_BUILTIN_REGISTRARS: list[Callable[[ModelRegistry], None]] = []


def builtin(register: Callable[[ModelRegistry], None]) -> Callable[[ModelRegistry], None]:
    """Decorator for a function that adds built-in entries to the default registry."""
    _BUILTIN_REGISTRARS.append(register)
    return register
