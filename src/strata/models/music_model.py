"""The built-in music model: a small GPT-2 over the REMI-style tokens of :mod:`music_tokens`.

The network is ``transformers.GPT2LMHeadModel`` with a tiny config (a few million parameters);
nothing here hand-writes attention. A model is its config (:class:`MusicModelConfig`, saved as
``config.json``) plus fp16 weights (``model.safetensors``); :meth:`MusicModel.save_pretrained`
and :meth:`MusicModel.from_pretrained` round-trip exactly (tested). Sampling with grammar
constraints, cadences and key/tempo/length controls lives in :mod:`strata.models.music_generate`.

Training sequences are ``BOS KEY BAR ...`` windows that always start at a bar line with the key
in front (:mod:`strata.train.music`), so generation can slide its context window bar by bar and
keep the key conditioning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from strata.errors import ModelError
from strata.models.builtin import MUSIC
from strata.models.music_tokens import TOKEN_ID, VOCAB
from strata.models.weights_folder import CONFIG_NAME, WEIGHTS_NAME, config_from_dict, load_network, save_weights_folder

# The most tokens one bar can take: BAR, 16 POS, and 4 monophonic voices × 16 onsets × 3 tokens.
MAX_BAR_TOKENS = 1 + 16 + 4 * 16 * 3
MODEL_ID = MUSIC.id  # the registry's name for it (models/builtin.py)


@dataclass(frozen=True)
class MusicModelConfig:
    """Everything needed to rebuild the network; saved as JSON beside the weights.

    Args:
        n_layer: transformer blocks.
        n_head: attention heads per block (must divide ``n_embd``).
        n_embd: width of the residual stream.
        n_positions: longest context in tokens (learned position embeddings); at least
            ``MAX_BAR_TOKENS + 2`` so the longest possible bar fits after ``BOS KEY``.
        dropout: dropout on residual, attention and embeddings while training.
        vocab_size: size of the token vocabulary (``len(VOCAB)``; checked on load so weights
            trained on another vocabulary are refused).
    """

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    n_positions: int = 512
    dropout: float = 0.1
    vocab_size: int = len(VOCAB)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ModelError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.n_positions < MAX_BAR_TOKENS + 2:
            raise ModelError(f"n_positions must be at least {MAX_BAR_TOKENS + 2} (BOS, KEY and the longest bar), "
                             f"got {self.n_positions}")
        if self.vocab_size != len(VOCAB):
            raise ModelError(f"the model was trained on a vocabulary of {self.vocab_size} tokens; this strata's "
                             f"music tokens have {len(VOCAB)} — retrain it with `strata train music`")

    @classmethod
    def from_dict(cls, d: dict) -> "MusicModelConfig":
        """Build from a (JSON) dict; lists become tuples, unknown keys are an error."""
        return config_from_dict(cls, d, "music model")

    def gpt2_config(self):  # -> transformers.GPT2Config
        from transformers import GPT2Config

        return GPT2Config(vocab_size=self.vocab_size, n_positions=self.n_positions, n_embd=self.n_embd,
                          n_layer=self.n_layer, n_head=self.n_head, resid_pdrop=self.dropout,
                          embd_pdrop=self.dropout, attn_pdrop=self.dropout, bos_token_id=TOKEN_ID["BOS"],
                          eos_token_id=TOKEN_ID["EOS"], pad_token_id=TOKEN_ID["PAD"])


def build_network(cfg: MusicModelConfig):  # -> transformers.GPT2LMHeadModel
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel(cfg.gpt2_config())


class MusicModel:
    """A GPT-2 over music tokens, with its config.

    Args:
        cfg: the architecture.
        net: a ``GPT2LMHeadModel`` built from ``cfg`` (float32 on the CPU for inference).
        info: what the export recorded (training steps, held-out loss, data); empty for random models.
    """

    def __init__(self, cfg: MusicModelConfig, net, info: dict | None = None):
        self.cfg = cfg
        self.net = net
        self.info = info or {}

    @classmethod
    def random(cls, cfg: MusicModelConfig, *, seed: int = 0) -> "MusicModel":
        """A freshly initialized model (the same ``seed`` gives the same weights)."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = build_network(cfg)
        return cls(cfg, net.eval())

    def param_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    @torch.no_grad()
    def logits(self, ids: torch.Tensor, past=None):
        """Next-token logits for the last position of ``ids`` (1, T) and the updated KV cache."""
        out = self.net(input_ids=ids, past_key_values=past, use_cache=True)
        return out.logits[0, -1], out.past_key_values

    def save_pretrained(self, directory: Path, *, dtype: torch.dtype = torch.float16, extra: dict | None = None) -> Path:
        """Write ``model.safetensors`` (in ``dtype``, tied embeddings stored once) + ``config.json``."""
        state = {k: v.to(dtype) for k, v in self.net.state_dict().items()
                 if k != "lm_head.weight"}  # tied to transformer.wte.weight
        return save_weights_folder(directory, state, {"model": asdict(self.cfg), **(extra or {})}, tag="music_model")

    @classmethod
    def from_pretrained(cls, directory: Path) -> "MusicModel":
        """Load a model written by :meth:`save_pretrained` (safetensors only; computes in float32)."""
        loaded = load_network(directory, section="model", config_class=MusicModelConfig, build=build_network,
                              tied=("lm_head.weight",), what="music model", how_to_make=(
                                  "train and export one with `strata train music` then `strata train music --export`"))
        loaded.net.tie_weights()
        return cls(loaded.cfg, loaded.net, loaded.record)


__all__ = ["CONFIG_NAME", "MODEL_ID", "WEIGHTS_NAME", "MusicModel", "MusicModelConfig", "build_network"]
