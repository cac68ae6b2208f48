"""MODEL_CARD.md for the exported music model: what it is, what it learned from, how well it does.

The evaluation numbers come from ``bench/results/music.json`` only when that file measured the
very weights being described (same sha256), so the card never quotes another model's numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from strata.models.music_model import MODEL_ID, WEIGHTS_NAME, MusicModelConfig
from strata.store.blobs import sha256_file

BENCH_RESULT = Path(__file__).resolve().parents[3] / "bench" / "results" / "music.json"


def _evaluation(weights_sha: str) -> str:
    if not BENCH_RESULT.is_file():
        return "Not measured yet: run `python bench/music.py`, then export again to fill this section.\n"
    bench = json.loads(BENCH_RESULT.read_text(encoding="utf-8"))
    if bench.get("model", {}).get("weights_sha256") != weights_sha:
        return ("`bench/results/music.json` measured other weights; run `python bench/music.py`, then export "
                "again to fill this section.\n")
    m = bench["metrics"]
    rows = [
        ("notes in key (target ≥ 95%)", f"{m['in_key']['generated']:.1%}",
         f"held-out Bach {m['in_key']['heldout']:.1%}, random notes {m['in_key']['random']:.1%}"),
        ("pitch-class histogram distance to held-out (TV, key-relative)", f"{m['pitch_class_tv']['generated']:.3f}",
         f"random notes {m['pitch_class_tv']['random']:.3f}"),
        ("melodic interval histogram distance to held-out (TV)", f"{m['interval_tv']['generated']:.3f}",
         f"random notes {m['interval_tv']['random']:.3f}"),
        ("longest passage copied from the training set, bars (target ≤ 2)", f"{m['copy_bars']['generated_max']}",
         f"held-out Bach vs. training set: {m['copy_bars']['heldout_max']}"),
        ("generation time per minute of music, s", f"{m['speed']['seconds_per_minute']:.1f}",
         f"model {m['speed']['model_seconds_per_minute']:.1f} s + rendering; {bench['settings']['threads']} thread, "
         f"load average {bench['settings'].get('load_average', 'n/a')} on {bench['machine']['cpu_count']} cores"),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return (f"`bench/music.py` ({bench['settings']['pieces']} pieces of {bench['settings']['bars']} bars, keys and "
            f"modes alternating, temperature {bench['settings']['temperature']}, top-p {bench['settings']['top_p']}, {bench['date']}):\n\n"
            f"| measure | this model | reference in the same run |\n|---|---|---|\n{table}\n")


def write_card(directory: Path, record: dict, cfg: MusicModelConfig, train: dict) -> Path:
    """Write ``MODEL_CARD.md`` beside the exported weights; returns its path."""
    sha = sha256_file(directory / WEIGHTS_NAME)
    text = f"""# {MODEL_ID} — model card

A small autoregressive transformer that writes four-part (soprano, alto, tenor, bass) music in
the style of Bach's chorales, in any major or minor key. `sound.music` samples it under a
grammar and a cadence plan and plays the result with General MIDI instruments.

## Model

| part | choice |
|---|---|
| tokens | REMI-style events on a sixteenth grid (`strata/models/music_tokens.py`): `BOS KEY BAR POS VOICE PITCH DUR … EOS`, {cfg.vocab_size} tokens, 4/4 only |
| network | `transformers.GPT2LMHeadModel`: {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, context {cfg.n_positions} tokens (~4 bars), {record['params_m']} M parameters |
| weights | fp16 safetensors, {record['weights_mb']} MB, sha256 `{sha[:16]}…`; no optimizer state |
| decoding | grammar-masked sampling (every sequence decodes), monophonic voices, exact bar count, authentic cadence (bass 5→1, final root-position tonic triad with its third) — `strata/models/music_generate.py` |

## Data

Bach's chorales (public-domain compositions) as encoded in music21's bundled corpus (music21 is
BSD-3-Clause; its corpus documentation describes the collection as freely distributable):
the 4/4 four-part chorales on a sixteenth grid, exact duplicates removed. Held out: whole tunes
(chorales opening with the same soprano intervals stay together), ~10%:
{record['train_chorales']} training and {record['heldout_chorales']} held-out chorales. Training pieces
are transposed into every key that keeps pitches in range, the KEY token rewritten
({record['train_sequences']} sequences).

## Recipe and training

`src/strata/train/configs/music.yaml` (every value with its reason). Windows of {cfg.n_positions}
tokens starting at bar lines with `BOS KEY` in front; AdamW lr {train['lr']} (warmup {train['warmup_steps']}
steps, cosine to {train['lr_final']} at {train['steps']}), batch {train['batch_size']}, one CPU thread.
Reproduce: `strata train music` (resume with `--resume`), then `strata train music --export`.

Trained {record['step']} of the schedule's {train['steps']} steps in {record['train_minutes']} minutes of wall time
(resume with `strata train music --resume` to finish it); last logged training loss
{record.get('train_loss', 'n/a')}, held-out loss {record['heldout_loss_fp32']} nats/token
({record['heldout_loss_fp16']} with these fp16 weights).

## Evaluation

{_evaluation(sha)}
## Limits

4/4 only; four voices; a sixteenth-note grid (no triplets); no dynamics or articulation (every
note at velocity 80). The style is narrow: hymn-like chorale harmony. The model was trained for
minutes on one CPU core, so voice leading has lapses (parallel fifths, awkward leaps) that Bach
would not write. Its output is synthetic; strata labels it as AI-generated.
"""
    path = directory / "MODEL_CARD.md"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
