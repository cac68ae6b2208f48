"""Tiny random SD 1.5- and SDXL-style diffusers pipelines, built offline for tests and the bench."""
from __future__ import annotations

import json
from pathlib import Path

import torch

LETTERS = "abcdefghijklmnopqrstuvwxyz"
TEXT2_PROJECTION = 24  # SDXL's pooled text embedding width (tiny)


def write_tokenizer(directory: Path) -> None:
    """A CLIP BPE tokenizer over single letters (no merges): enough to encode test prompts."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in LETTERS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")


def tokenizer(directory: Path):
    from transformers import CLIPTokenizer

    write_tokenizer(directory)
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=77)


def text_encoder(with_projection: bool = False):
    """CLIP text encoder; SDXL's second one (with projection) is wider than the first, as in the real
    model (diffusers' single-file loader tells them apart by width), has 10 layers (the original
    layout is recognised by its 10th block) and a non-square projection."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    size = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=10, projection_dim=TEXT2_PROJECTION) \
        if with_projection else dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, projection_dim=16)
    cfg = CLIPTextConfig(vocab_size=64, num_attention_heads=2, max_position_embeddings=77, bos_token_id=0,
                         eos_token_id=1, pad_token_id=1, **size)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg).eval()


def vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=32).eval()


def unet(kind: str, in_channels: int = 4):
    from diffusers import UNet2DConditionModel

    common = dict(block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=in_channels,
                  out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
    if kind == "sd15":
        return UNet2DConditionModel(cross_attention_dim=16, attention_head_dim=4, **common).eval()
    # SDXL cross-attends to both encoders' hidden states side by side (16 + 32 wide) and embeds the
    # pooled text plus six size/crop numbers (8 features each)
    return UNet2DConditionModel(cross_attention_dim=16 + 32, attention_head_dim=(2, 4), use_linear_projection=True,
                                addition_embed_type="text_time", addition_time_embed_dim=8,
                                projection_class_embeddings_input_dim=TEXT2_PROJECTION + 6 * 8, **common).eval()


def scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def build(kind: str, directory: Path, *, seed: int = 0, inpaint: bool = False):
    """Save a tiny random ``kind`` ("sd15" | "sdxl") pipeline to ``directory``; return the pipeline."""
    import diffusers

    torch.manual_seed(seed)
    tok_dir = directory.parent / f"{directory.name}-tok"
    parts = dict(unet=unet(kind, 9 if inpaint else 4), vae=vae(), scheduler=scheduler())
    if kind == "sd15":
        cls = diffusers.StableDiffusionInpaintPipeline if inpaint else diffusers.StableDiffusionPipeline
        pipe = cls(text_encoder=text_encoder(), tokenizer=tokenizer(tok_dir), safety_checker=None,
                   feature_extractor=None, requires_safety_checker=False, **parts)
    else:
        cls = diffusers.StableDiffusionXLInpaintPipeline if inpaint else diffusers.StableDiffusionXLPipeline
        pipe = cls(text_encoder=text_encoder(), text_encoder_2=text_encoder(True), tokenizer=tokenizer(tok_dir),
                   tokenizer_2=tokenizer(tok_dir), **parts)
    pipe.save_pretrained(directory, safe_serialization=True)
    return pipe


def lora_file(kind: str, path: Path, *, seed: int = 1) -> Path:
    """A random LoRA for a tiny ``kind`` UNet's attention projections, saved as diffusers does."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    model = unet(kind)
    model.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                 init_lora_weights=False))
    StableDiffusionPipeline.save_lora_weights(path.parent, unet_lora_layers=get_peft_model_state_dict(model),
                                              weight_name=path.name)
    return path
