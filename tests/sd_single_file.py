"""Write a diffusers SD 1.x / SDXL pipeline as one original-layout ("LDM" / CompVis) checkpoint.

Tests need single-file checkpoints without downloading one, so this turns a tiny pipeline's
components back into the key layout of the original Stable Diffusion repositories — the
inverse of what diffusers' ``from_single_file`` undoes:

- UNet → ``model.diffusion_model.*``: ``input_blocks`` / ``middle_block`` / ``output_blocks``,
  numbered in execution order (block 0 is ``conv_in``; a down block's resnets and attentions
  share an index, its downsampler takes the next one; an up block's upsampler sits after the
  last resnet and its attention at that index).
- VAE → ``first_stage_model.*``: ``encoder.down.i.block.j``, ``mid.block_1/2``, ``mid.attn_1``
  with 1×1-conv q/k/v/proj_out weights, and decoder up blocks numbered from the bottom
  (``decoder.up.0`` is diffusers' last up block).
- CLIP text encoder (transformers layout) → ``cond_stage_model.transformer.text_model.*``
  (SD 1.x) or ``conditioner.embedders.0.transformer.text_model.*`` (SDXL).
- SDXL's second encoder → OpenCLIP layout ``conditioner.embedders.1.model.*``: fused
  ``attn.in_proj_weight`` (q, k, v stacked), ``mlp.c_fc``/``c_proj``, ``ln_1/2``,
  ``positional_embedding`` and ``text_projection`` stored transposed (width × embed dim).

The mapping is checked by a round trip: diffusers' loader must give back every tensor.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

Tensors = dict[str, torch.Tensor]

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}


def _rename(state: Tensors, prefixes: dict[str, str], inner: dict[str, str] | None = None) -> Tensors:
    """Rename every key by its longest matching prefix (``inner`` renames the first name after it);
    a key with no prefix is an error, so nothing is silently dropped."""
    out: Tensors = {}
    ordered = sorted(prefixes, key=len, reverse=True)
    for key, value in state.items():
        prefix = next((p for p in ordered if key.startswith(p)), None)
        if prefix is None:
            raise KeyError(f"no original-layout name for {key}")
        rest = key[len(prefix):]
        head, _, tail = rest.partition(".")
        if inner and head in inner and tail:
            rest = f"{inner[head]}.{tail}"
        out[prefixes[prefix] + rest] = value
    return out


def unet_to_ldm(state: Tensors, config: Any) -> Tensors:
    """A ``UNet2DConditionModel`` state dict → ``model.diffusion_model.*`` keys."""
    layers = config.layers_per_block
    blocks = len(config.block_out_channels)
    resnet_prefixes: dict[str, str] = {}
    other: dict[str, str] = {
        "conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.", "add_embedding.linear_1.": "label_emb.0.0.",
        "add_embedding.linear_2.": "label_emb.0.2.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
        "mid_block.attentions.0.": "middle_block.1.",
    }
    resnet_prefixes["mid_block.resnets.0."] = "middle_block.0."
    resnet_prefixes["mid_block.resnets.1."] = "middle_block.2."
    index = 1
    for b in range(blocks):
        for j in range(layers):
            resnet_prefixes[f"down_blocks.{b}.resnets.{j}."] = f"input_blocks.{index}.0."
            other[f"down_blocks.{b}.attentions.{j}."] = f"input_blocks.{index}.1."
            index += 1
        if b < blocks - 1:
            other[f"down_blocks.{b}.downsamplers.0.conv."] = f"input_blocks.{index}.0.op."
            index += 1
    index = 0
    for b in range(blocks):
        has_attention = any(k.startswith(f"up_blocks.{b}.attentions.") for k in state)
        for j in range(layers + 1):
            resnet_prefixes[f"up_blocks.{b}.resnets.{j}."] = f"output_blocks.{index}.0."
            other[f"up_blocks.{b}.attentions.{j}."] = f"output_blocks.{index}.1."
            index += 1
        other[f"up_blocks.{b}.upsamplers.0.conv."] = f"output_blocks.{index - 1}.{2 if has_attention else 1}.conv."
    resnets = {k: v for k, v in state.items() if any(k.startswith(p) for p in resnet_prefixes)}
    rest = {k: v for k, v in state.items() if k not in resnets}
    out = {**_rename(resnets, resnet_prefixes, _RESNET), **_rename(rest, other)}
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def vae_to_ldm(state: Tensors, config: Any) -> Tensors:
    """An ``AutoencoderKL`` state dict → ``first_stage_model.*`` keys."""
    blocks = len(config.block_out_channels)
    prefixes = {"quant_conv.": "quant_conv.", "post_quant_conv.": "post_quant_conv."}
    for part in ("encoder", "decoder"):
        prefixes.update({f"{part}.conv_in.": f"{part}.conv_in.", f"{part}.conv_out.": f"{part}.conv_out.",
                         f"{part}.conv_norm_out.": f"{part}.norm_out.",
                         f"{part}.mid_block.resnets.0.": f"{part}.mid.block_1.",
                         f"{part}.mid_block.resnets.1.": f"{part}.mid.block_2.",
                         f"{part}.mid_block.attentions.0.": f"{part}.mid.attn_1."})
    for i in range(blocks):
        up = blocks - 1 - i  # the original numbers decoder blocks from the lowest resolution
        prefixes.update({f"encoder.down_blocks.{i}.resnets.": f"encoder.down.{i}.block.",
                         f"encoder.down_blocks.{i}.downsamplers.0.conv.": f"encoder.down.{i}.downsample.conv.",
                         f"decoder.up_blocks.{i}.resnets.": f"decoder.up.{up}.block.",
                         f"decoder.up_blocks.{i}.upsamplers.0.conv.": f"decoder.up.{up}.upsample.conv."})
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
    out: Tensors = {}
    for key, value in _rename(state, prefixes).items():
        if ".mid.attn_1." in key:
            head, rest = key.split(".mid.attn_1.")
            name, _, param = rest.partition(".")
            key = f"{head}.mid.attn_1.{attention[name]}.{param.removeprefix('0.')}"  # to_out.0.weight → proj_out.weight
            if value.ndim == 2:  # the original attention uses 1×1 convolutions
                value = value[:, :, None, None]
        elif ".block." in key:
            key = key.replace(".conv_shortcut.", ".nin_shortcut.")
        out["first_stage_model." + key] = value
    return out


def clip_to_ldm(state: Tensors, prefix: str) -> Tensors:
    """A transformers ``CLIPTextModel`` state dict → ``{prefix}text_model.*`` keys (the original
    keeps transformers' names; newer transformers drop the ``text_model.`` level)."""
    return {prefix + (k if k.startswith("text_model.") else "text_model." + k): v for k, v in state.items()}


def open_clip_to_ldm(state: Tensors, prefix: str) -> Tensors:
    """A transformers ``CLIPTextModelWithProjection`` state dict → OpenCLIP keys under ``prefix``."""
    top = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
           "text_model.embeddings.position_embedding.weight": "positional_embedding",
           "text_model.final_layer_norm.weight": "ln_final.weight",
           "text_model.final_layer_norm.bias": "ln_final.bias"}
    layer = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}
    out: Tensors = {prefix + "text_projection": state["text_projection.weight"].T.contiguous()}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in top:
            out[prefix + top[key]] = value
        elif key.startswith("text_model.encoder.layers."):
            i, name = key.removeprefix("text_model.encoder.layers.").split(".", 1)
            module, param = name.rsplit(".", 1)
            base = f"{prefix}transformer.resblocks.{i}."
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                fused.setdefault(f"{base}attn.in_proj_{param}", {})[module[10]] = value
            else:
                out[f"{base}{layer[module]}.{param}"] = value
        elif key != "text_projection.weight":
            raise KeyError(f"no OpenCLIP name for {key}")
    for key, qkv in fused.items():
        out[key] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    return out


def pipeline_to_ldm(pipe: Any) -> Tensors:
    """Every weight of an SD 1.x or SDXL pipeline in one original-layout state dict."""
    out = {**unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config),
           **vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config)}
    if getattr(pipe, "text_encoder_2", None) is None:
        out.update(clip_to_ldm(pipe.text_encoder.state_dict(), "cond_stage_model.transformer."))
    else:
        out.update(clip_to_ldm(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        out.update(open_clip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    return {k: v.detach().contiguous() for k, v in out.items()}


def save_single_file(pipe: Any, path: Path) -> Path:
    """Write ``pipe`` as one original-layout ``.safetensors`` checkpoint at ``path``."""
    from safetensors.torch import save_file

    save_file(pipeline_to_ldm(pipe), str(path))
    return path


def config_folder(pipeline_dir: Path, target: Path) -> Path:
    """Copy a diffusers pipeline folder's configs and tokenizer files (no weights) to ``target``:
    what ``from_single_file(..., config=target)`` needs next to the checkpoint."""
    for f in pipeline_dir.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".txt"):
            dest = target / f.relative_to(pipeline_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
    return target
