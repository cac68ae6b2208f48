"""Write the CLIP tokenizer files (vocab.json, merges.txt) next to the shipped SD 1.5 / SDXL configs.

Single-file checkpoints carry no tokenizer, and no installed package has CLIP's vocabulary, so
``scripts/install.sh`` fetches open_clip_torch's wheel (MIT licence; ``pip download --no-deps``,
never installed) and runs ``python clip_vocab.py WHEEL``. The wheel's
``bpe_simple_vocab_16e6.txt.gz`` is the BPE merge list both SD text encoders were trained with;
the vocabulary follows from it the way CLIP builds it: the 256 byte symbols, the same with the
end-of-word mark ``</w>``, one token per merge (48,894 merges), then ``<|startoftext|>`` and
``<|endoftext|>`` — 49,408 tokens, ids as in Hugging Face's CLIP tokenizer files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import zipfile
from pathlib import Path

BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
VOCAB_SIZE = 49408
N_MERGES = VOCAB_SIZE - 2 * 256 - 2
HERE = Path(__file__).resolve().parent
TOKENIZER_DIRS = ("sd15/tokenizer", "sdxl/tokenizer", "sdxl/tokenizer_2")


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's printable stand-in for each byte 0..255, in CLIP's vocabulary order: the
    printable Latin-1 bytes as themselves, then the rest shifted past U+0100."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(rest))]


def vocab_and_merges(bpe_gz: bytes) -> tuple[dict[str, int], list[str]]:
    """CLIP's token → id map and merge list from the gzipped BPE file."""
    if hashlib.sha256(bpe_gz).hexdigest() != BPE_SHA256:
        raise ValueError("the BPE file is not the one CLIP was trained with (sha256 differs)")
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = lines[1:N_MERGES + 1]  # line 0 is a version header
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def install(wheel: Path, root: Path = HERE) -> None:
    """Write vocab.json and merges.txt into every shipped tokenizer folder under ``root``."""
    with zipfile.ZipFile(wheel) as zf:
        vocab, merges = vocab_and_merges(zf.read(BPE_MEMBER))
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"built {len(vocab)} tokens, expected {VOCAB_SIZE}")
    for sub in TOKENIZER_DIRS:
        folder = root / sub
        (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python clip_vocab.py open_clip_torch-*.whl")
    install(Path(sys.argv[1]))
