"""A user's own Stable Diffusion-family model (SD 1.x / SDXL) run through real diffusers pipelines.

A model is a diffusers pipeline folder (``model_index.json`` + component folders) or one
original-format ``.safetensors`` checkpoint. :func:`inspect_checkpoint` reads only metadata
(safetensors headers, JSON configs) to say what a path is — its architecture, what it can do
and how much memory it needs — so a bad path fails at ``strata models add`` time, before
anything is registered. :func:`load_model` builds the pipeline (``from_pretrained`` or
``from_single_file`` with local configs, never the network), and :func:`run` calls it with
strata's conventions: image i of a batch uses ``seed + i`` (one CPU generator per image),
samplers by name (:mod:`strata.models.samplers`), LoRAs loaded for the run and unloaded after,
results as straight-alpha RGBA :class:`~strata.media.image.Image` values.

Capabilities: a UNet with 4 input channels does text-to-image and image-to-image; 9 input
channels (a latent + mask + masked-image UNet) is an inpainting model; an SDXL checkpoint
without the first text encoder is a refiner (image-to-image). Pickled weights (.ckpt, .bin,
.pt) are refused unless the user trusts the file; even then torch loads them with
``weights_only=True`` (diffusers does so for every ``torch.load``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from strata.errors import ModelError
from strata.media.image import Image, Mask
from strata.models.samplers import Sampling, SamplingArgs

if TYPE_CHECKING:  # **kwargs typing only (PEP 692)
    from typing_extensions import Unpack

PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"}
CONFIGS = Path(__file__).resolve().parent / "configs"

# architecture → capability → diffusers pipeline class
PIPELINES: dict[str, dict[str, str]] = {
    "sd15": {"text-to-image": "StableDiffusionPipeline", "image-to-image": "StableDiffusionImg2ImgPipeline",
             "inpaint": "StableDiffusionInpaintPipeline"},
    "sdxl": {"text-to-image": "StableDiffusionXLPipeline", "image-to-image": "StableDiffusionXLImg2ImgPipeline",
             "inpaint": "StableDiffusionXLInpaintPipeline"},
    "sdxl-refiner": {"image-to-image": "StableDiffusionXLImg2ImgPipeline",
                     "refiner": "StableDiffusionXLImg2ImgPipeline"},
}
ARCH_NAMES = {"sd15": "Stable Diffusion 1.x", "sdxl": "SDXL", "sdxl-refiner": "SDXL refiner"}

# Original-format checkpoint keys that tell the architectures apart (the ones diffusers' own
# single-file loader checks).
_KEY_SDXL = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"
_KEY_SDXL_REFINER = "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias"
_KEY_SD1_TEXT = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"
_KEY_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"

# Reference cost for the "how long will this take" estimate: a 512×512 SD 1.5 image (860 M
# UNet parameters, 64×64 latent, guidance → 2 UNet passes) takes ~4.5–9 s per step on 2 cores.
_REF_S_PER_STEP = (4.5, 9.0)
_REF_UNET_PARAMS = 860e6


@dataclass(frozen=True)
class CheckpointInfo:
    """What a model path is, read from metadata only.

    Args:
        path: the pipeline folder or checkpoint file.
        format: "diffusers" (a folder) or "single-file".
        arch: "sd15", "sdxl" or "sdxl-refiner".
        unet_in_channels: 4 (text-to-image) or 9 (inpainting).
        files: the files whose bytes define the model (weights, configs, tokenizer).
        param_count: parameters of all components; memory needed ≈ 4 bytes each (fp32).
        unet_params: parameters of the UNet (sets the time per step).
        pickled: weights include pickled files (only loadable with ``trust_pickle``).
    """

    path: Path
    format: str
    arch: str
    unet_in_channels: int
    files: tuple[Path, ...]
    param_count: int
    unet_params: int
    pickled: bool = False

    @property
    def capabilities(self) -> set[str]:
        if self.arch == "sdxl-refiner":
            return {"image-to-image", "refiner"}
        if self.unet_in_channels == 9:
            return {"inpaint"}
        return {"text-to-image", "image-to-image"}

    @property
    def memory_bytes(self) -> int:
        # fp32 weights + ~25 % for activations at native size (attention maps, VAE decode)
        return int(self.param_count * 4 * 1.25)


def _safetensors_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape, from a safetensors header; ModelError if the file is not one (or truncated)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for every kind of damage
        raise ModelError(f"{path} is not a readable safetensors file ({exc}); it may be truncated — "
                         "download or copy it again") from None


def _numel(shapes: dict[str, tuple[int, ...]]) -> int:
    return int(sum(np.prod(s, dtype=np.int64) for s in shapes.values()))


def inspect_checkpoint(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> CheckpointInfo:
    """Say what ``path`` is (see :class:`CheckpointInfo`) without loading weights.

    Raises:
        ModelError: the path is missing, not a Stable Diffusion 1.x/XL model, truncated, or
            pickled without ``trust_pickle``.
    """
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise ModelError(f"{p} does not exist; give a diffusers pipeline folder or a .safetensors checkpoint")
    if p.is_dir():
        return _inspect_folder(p, trust_pickle)
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not trust_pickle:
            raise ModelError(f"{p.name} is a pickled checkpoint, which can run arbitrary code when loaded; convert it "
                             "to .safetensors, or pass --trust-pickle if you trust its source (it is then loaded "
                             "with torch's weights_only=True)")
        import torch

        try:
            state = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{p} could not be read as a weights-only torch checkpoint ({exc})") from None
        state = state.get("state_dict", state)
        shapes = {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
        return _single_file_info(p, shapes, pickled=True)
    if suffix != ".safetensors":
        raise ModelError(f"{p.name} is not a model strata can load: give a diffusers pipeline folder or a "
                         ".safetensors checkpoint (pickled .ckpt/.bin/.pt need --trust-pickle)")
    return _single_file_info(p, _safetensors_header(p), pickled=False)


def _single_file_info(p: Path, shapes: dict[str, tuple[int, ...]], *, pickled: bool) -> CheckpointInfo:
    if _KEY_SDXL in shapes:
        arch = "sdxl"
    elif _KEY_SDXL_REFINER in shapes:
        arch = "sdxl-refiner"
    elif _KEY_SD1_TEXT in shapes:
        arch = "sd15"
    else:
        sample = ", ".join(sorted(shapes)[:3]) or "no tensors"
        raise ModelError(f"{p.name} is not a Stable Diffusion 1.x or SDXL checkpoint (its tensors start: {sample}); "
                         "a LoRA or a lone UNet/VAE cannot be added as a model")
    if _KEY_CONV_IN not in shapes:
        raise ModelError(f"{p.name} has no UNet (no {_KEY_CONV_IN}); it is not a full checkpoint")
    unet = {k: s for k, s in shapes.items() if k.startswith("model.diffusion_model.")}
    return CheckpointInfo(p, "single-file", arch, shapes[_KEY_CONV_IN][1], (p,), _numel(shapes), _numel(unet), pickled)


def _inspect_folder(p: Path, trust_pickle: bool) -> CheckpointInfo:
    index_file = p / "model_index.json"
    if not index_file.is_file():
        raise ModelError(f"{p} is a folder without model_index.json, so not a diffusers pipeline; give a pipeline "
                         "folder (as saved by save_pretrained) or a single .safetensors checkpoint")
    try:
        index = json.loads(index_file.read_text())
        in_channels = json.loads((p / "unet" / "config.json").read_text())["in_channels"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{p}: cannot read the pipeline's model_index.json or unet/config.json ({exc})") from None
    cls = str(index.get("_class_name", ""))
    if "StableDiffusionXL" in cls:
        arch = "sdxl-refiner" if (index.get("text_encoder") or [None])[0] is None else "sdxl"
    elif cls.startswith("StableDiffusion") and "Upscale" not in cls and "Depth" not in cls:
        arch = "sd15"
    else:
        raise ModelError(f"{p}: a {cls or 'unknown'} pipeline is not supported; strata runs Stable Diffusion 1.x "
                         "and SDXL pipelines")
    files: list[Path] = []
    total = unet_params = 0
    pickled = False
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None or not (p / name).is_dir():
            continue
        comp = p / name
        weights = sorted(comp.glob("*.safetensors"))
        pickles = sorted(f for f in comp.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES)
        if not weights and pickles:
            if not trust_pickle:
                raise ModelError(f"{p}: {name}/ holds only pickled weights ({pickles[0].name}), which can run "
                                 "arbitrary code when loaded; re-save the pipeline with safetensors, or pass "
                                 "--trust-pickle if you trust its source")
            pickled = True
            weights = pickles
        for w in weights:
            if w.suffix == ".safetensors":
                n = _numel(_safetensors_header(w))
                total += n
                unet_params += n if name == "unet" else 0
            else:
                total += w.stat().st_size // 4  # pickled fp32 weights: size is the best estimate
        files += weights + sorted(f for f in comp.iterdir() if f.is_file() and f.suffix in (".json", ".txt"))
    if unet_params == 0 and not pickled:
        raise ModelError(f"{p}: the unet/ folder has no weights; the pipeline folder is incomplete")
    return CheckpointInfo(p, "diffusers", arch, int(in_channels), tuple([index_file] + files), total,
                          unet_params, pickled)


def estimate_seconds(info_unet_params: int, *, width: int, height: int, steps: int, count: int,
                     guidance: float) -> tuple[float, float]:
    """A (low, high) guess of the seconds a generation takes on this CPU, from the reference cost
    of SD 1.5 at 512² on 2 cores, scaled by UNet size, pixels, batch, guidance and cores."""
    threads = max(1, _torch_threads())
    scale = (info_unet_params / _REF_UNET_PARAMS) * (width * height / 512**2) * count
    scale *= (1.0 if guidance > 1 else 0.5) * (2 / threads)
    return _REF_S_PER_STEP[0] * scale * steps, _REF_S_PER_STEP[1] * scale * steps


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


@dataclass
class DiffusersModel:
    """A loaded user model: the pipeline it was loaded as, its siblings for other tasks (sharing
    the same components, so no extra memory) and a lock (LoRAs and the scheduler are swapped
    in per run)."""

    name: str
    arch: str
    pipe: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    _variants: dict[str, Any] = field(default_factory=dict)

    def pipeline(self, capability: str) -> Any:
        """The pipeline for ``capability`` (same components as :attr:`pipe`)."""
        import diffusers

        cls_name = PIPELINES[self.arch].get(capability)
        if cls_name is None:
            raise ModelError(f"model '{self.name}' ({ARCH_NAMES[self.arch]}) cannot do {capability}")
        if type(self.pipe).__name__ == cls_name:
            return self.pipe
        if cls_name not in self._variants:
            variant = getattr(diffusers, cls_name).from_pipe(self.pipe)
            variant.set_progress_bar_config(disable=True)
            self._variants[cls_name] = variant
        return self._variants[cls_name]


def single_file_config(info: CheckpointInfo, config_dir: str | os.PathLike[str] | None = None) -> Path:
    """The diffusers-format folder whose configs and tokenizer the single-file checkpoint ``info``
    loads with: ``config_dir``, or the one strata ships for its architecture.

    Raises:
        ModelError: no such folder, not a diffusers folder, made for another architecture or
            UNet input (an inpainting checkpoint needs an inpainting config), or without its
            tokenizer files.
    """
    arch = info.arch
    shipped = config_dir is None
    folder = CONFIGS / arch if shipped else Path(config_dir).expanduser().resolve()
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        if shipped:
            raise ModelError(f"strata ships no configs for {ARCH_NAMES[arch]} single files; pass --config DIR, a "
                             "diffusers-format folder of the same architecture (configs and tokenizer, no weights "
                             "needed)")
        raise ModelError(f"--config {folder} is not a diffusers-format folder (no model_index.json)")
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{index_file} cannot be read ({exc})") from None
    if ("XL" in str(index.get("_class_name", ""))) != arch.startswith("sdxl"):
        raise ModelError(f"--config {folder} is a {index.get('_class_name')} folder, but the checkpoint is "
                         f"{ARCH_NAMES[arch]}; give a config folder of the same architecture")
    for name, spec in index.items():
        if name.startswith("tokenizer") and isinstance(spec, list) and spec[0] is not None:
            tok = folder / name
            if not ((tok / "tokenizer.json").is_file() or (tok / "vocab.json").is_file() and (tok / "merges.txt").is_file()):
                hint = ("run scripts/install.sh (it fetches the CLIP vocabulary) or pass --config DIR" if shipped
                        else "copy the pipeline's tokenizer folders too")
                raise ModelError(f"{tok} has no tokenizer.json nor vocab.json + merges.txt (the CLIP tokenizer); {hint}")
    try:
        in_channels = json.loads((folder / "unet" / "config.json").read_text())["in_channels"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{folder}: cannot read unet/config.json ({exc})") from None
    if in_channels != info.unet_in_channels:
        raise ModelError(f"{info.path.name} has a {info.unet_in_channels}-channel UNet but the configs in {folder} "
                         f"describe {in_channels} channels; pass --config DIR with an "
                         f"{'inpainting ' if info.unet_in_channels == 9 else ''}pipeline's configs")
    return folder


def config_files(folder: Path) -> list[Path]:
    """The files of a config folder that shape a single file's output (configs, tokenizer): part
    of the model's hash."""
    return sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix in (".json", ".txt"))


def load_model(name: str, info: CheckpointInfo, *, config_dir: Path | None = None) -> DiffusersModel:
    """Build the diffusers pipeline for ``info`` from local files only.

    Args:
        name: the model's registered name (for messages).
        info: from :func:`inspect_checkpoint`.
        config_dir: for single files, a diffusers-format folder with the configs and tokenizer
            (default: the ones shipped for the architecture in ``strata/models/configs/``).

    Raises:
        ModelError: the files do not load (wrong config for the checkpoint, damaged weights...).
    """
    import diffusers
    import torch

    capability = next(c for c in ("text-to-image", "inpaint", "image-to-image") if c in info.capabilities)
    cls = getattr(diffusers, PIPELINES[info.arch][capability])
    kwargs: dict[str, Any] = {"dtype": torch.float32, "local_files_only": True}
    if info.arch == "sd15":
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    try:
        if info.format == "diffusers":
            pipe = cls.from_pretrained(info.path, use_safetensors=None if info.pickled else True, **kwargs)
        else:
            config = single_file_config(info, config_dir)
            pipe = cls.from_single_file(str(info.path), config=str(config), **kwargs)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - diffusers/transformers raise many types; the user needs one message
        raise ModelError(f"model '{name}' could not be loaded from {info.path}: {type(exc).__name__}: {exc}") from None
    pipe.set_progress_bar_config(disable=True)
    return DiffusersModel(name, info.arch, pipe)


def make_scheduler(sampler: str, base_config: Any) -> Any:
    """The diffusers scheduler for ``sampler`` (short or A1111 name), built from the model's own
    scheduler config so its training schedule is kept."""
    import diffusers

    from strata.models.samplers import A1111_SCHEDULERS, a1111_name, unknown_sampler_message

    try:
        cls_name, overrides = A1111_SCHEDULERS[a1111_name(sampler)]
    except KeyError:
        raise ModelError(unknown_sampler_message(sampler)) from None
    return getattr(diffusers, cls_name).from_config(base_config, **overrides)


@dataclass(frozen=True)
class Lora:
    """A LoRA file to apply for one run, at ``scale`` (1 = as trained, 0 = off)."""

    path: Path
    scale: float = 1.0


def _apply_loras(model: DiffusersModel, pipe: Any, loras: Sequence[Lora]) -> None:
    names = []
    for i, lora in enumerate(loras):
        if lora.path.suffix.lower() != ".safetensors":
            raise ModelError(f"LoRA {lora.path.name}: only .safetensors LoRA files are loaded (pickles can run code)")
        if not lora.path.is_file():
            raise ModelError(f"LoRA file {lora.path} does not exist")
        name = f"strata_lora_{i}"
        try:
            pipe.load_lora_weights(str(lora.path), adapter_name=name)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"LoRA {lora.path.name} does not fit model '{model.name}' ({ARCH_NAMES[model.arch]}): "
                             f"{_first_line(exc)}. Is it made for another base model (SD 1.x vs SDXL)?") from None
        if not any(name in adapters for adapters in pipe.get_list_adapters().values()):
            raise ModelError(f"LoRA {lora.path.name} matches no layer of model '{model.name}' "
                             f"({ARCH_NAMES[model.arch]}); is it made for another base model (SD 1.x vs SDXL)?")
        names.append(name)
    if names:
        pipe.set_adapters(names, adapter_weights=[lora.scale for lora in loras])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _pil_rgb(image: Image) -> Any:
    import PIL.Image

    return PIL.Image.fromarray(image.to_uint8()[..., :3], "RGB")


def _pil_mask(mask: Mask) -> Any:
    import PIL.Image

    return PIL.Image.fromarray(np.clip(np.rint(mask.values * 255), 0, 255).astype(np.uint8), "L")


def run(
    model: DiffusersModel,
    capability: str,
    *,
    prompt: str,
    width: int | None = None,
    height: int | None = None,
    image: Image | None = None,
    mask: Mask | None = None,
    strength: float = 0.75,
    loras: Sequence[Lora] = (),
    precision: str = "fp32",
    attention_slicing: bool = False,
    callback: Callable[[int, int], None] | None = None,
    **sampling: Unpack[SamplingArgs],
) -> list[Image]:
    """Generate with ``model``'s pipeline for ``capability`` and return opaque RGBA images.

    Args:
        capability: "text-to-image", "image-to-image", "inpaint" or "refiner".
        prompt: the text.
        width, height: output size in px, multiples of 8 (default: the model's native size;
            image-to-image and inpaint default to the input image's size).
        image, mask, strength: the input image (image-to-image, inpaint), the mask (inpaint:
            1 = repaint) and how far to move from the input (0..1).
        loras: LoRA files applied for this run only (unloaded afterwards, also on error).
        precision: "fp32", or "bf16" to run under bfloat16 autocast (faster on CPUs with
            bf16 support, slightly different pixels).
        attention_slicing: compute attention in slices (less peak memory, a little slower).
        callback: ``callback(step, total)`` after every denoising step.
        **sampling: :class:`~strata.models.samplers.Sampling`'s settings (negative_prompt, count,
            seed, steps, guidance, sampler: a short or A1111 name); image i uses a CPU generator
            seeded ``seed + i``.
    """
    import torch

    s = Sampling(**sampling)
    if s.guidance_stop not in (None, 1.0):
        raise ModelError(f"guidance_stop {s.guidance_stop}: a diffusers model guides every step; leave "
                         "guidance_stop unset (or 1) — it applies to the built-in model")
    pipe = model.pipeline(capability)
    vae_scale = getattr(pipe, "vae_scale_factor", 8)
    for label, value in (("width", width), ("height", height)):
        if value is not None and value % vae_scale:
            raise ModelError(f"{label} must be a multiple of {vae_scale} for this model, got {value}")
    kwargs: dict[str, Any] = {
        "prompt": prompt, "negative_prompt": s.negative_prompt or None, "num_images_per_prompt": s.count,
        "num_inference_steps": s.steps, "guidance_scale": s.guidance, "output_type": "np",
        "generator": [torch.Generator("cpu").manual_seed(seed) for seed in s.seeds],
    }
    if capability == "text-to-image":
        kwargs.update(width=width, height=height)
    else:
        if image is None:
            raise ModelError(f"{capability} needs an input image")
        kwargs.update(image=_pil_rgb(image), strength=strength)
        if capability == "inpaint":
            if mask is None:
                raise ModelError("inpaint needs a mask (1 = repaint)")
            kwargs.update(mask_image=_pil_mask(mask), width=width or image.width, height=height or image.height)
    if callback is not None:
        def on_step_end(p: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            callback(i + 1, p.num_timesteps)
            return tensors

        kwargs["callback_on_step_end"] = on_step_end
    with model.lock:
        pipe.scheduler = make_scheduler(s.sampler, pipe.scheduler.config)
        if attention_slicing:
            pipe.enable_attention_slicing()
        try:
            _apply_loras(model, pipe, loras)
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                rgb = pipe(**kwargs).images
        finally:
            if loras:
                pipe.unload_lora_weights()
            if attention_slicing:
                pipe.disable_attention_slicing()
    rgb = np.asarray(rgb, dtype=np.float32)
    if not np.isfinite(rgb).all():
        raise ModelError("sampling produced non-finite pixels; try fp32 precision, fewer steps or lower guidance")
    alpha = np.ones(rgb.shape[:3] + (1,), np.float32)
    return [Image(np.concatenate([x, a], axis=2)) for x, a in zip(rgb, alpha)]
