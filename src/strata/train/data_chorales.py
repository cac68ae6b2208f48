"""The music model's dataset: Bach's four-part chorales from music21's bundled corpus.

    music21 corpus (371 chorales) ─► 4/4, four parts, sixteenth grid only (``score_notes``)
    ─► exact duplicates dropped ─► split by tune (chorales that open with the same soprano
    melody go to the same side) ─► chorales.json (cached; parsing takes ~1–2 min)

Training pieces are augmented by transposition into every shift in [−6, +5] semitones that
keeps all pitches inside the vocabulary, with the KEY token rewritten to the new tonic. Pieces
in other meters (3/4, 3/2, ...) are skipped: the token grid has 16 positions per bar (4/4 only).

License: Bach's chorales are public-domain compositions; the encodings come with music21
(BSD-3-Clause), whose corpus documentation calls its collection "freely distributable music ...
licensed to us (or in a free license)", free at least in the US.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from strata.errors import StrataError
from strata.models.music_tokens import PITCH_MAX, PITCH_MIN, STEPS_PER_BAR, TOKEN_ID, Note, encode

CACHE_NAME = "chorales.json"
TUNE_NOTES = 8  # soprano intervals compared to decide that two chorales share a tune


@dataclass(frozen=True)
class Chorale:
    """One chorale on the sixteenth grid, in its own key."""

    name: str
    tonic: int
    mode: str
    notes: tuple[Note, ...]

    @property
    def bars(self) -> int:
        return max(n.start + n.dur for n in self.notes) // STEPS_PER_BAR + 1 if self.notes else 0

    def transposed(self, shift: int) -> "Chorale":
        return Chorale(self.name, (self.tonic + shift) % 12, self.mode,
                       tuple(Note(n.start, n.voice, n.pitch + shift, n.dur) for n in self.notes))

    def tokens(self) -> list[int]:
        return encode(list(self.notes), tonic=self.tonic, mode=self.mode)

    def tune(self) -> tuple[int, ...]:
        """The soprano's first melodic intervals: equal for harmonizations of the same hymn tune."""
        sop = [n.pitch for n in sorted(self.notes) if n.voice == 0][: TUNE_NOTES + 1]
        return tuple(b - a for a, b in zip(sop, sop[1:]))


def data_dir() -> Path:
    """``$STRATA_DATA_DIR/chorales`` or ``~/.cache/strata/data/chorales``."""
    return Path(os.environ.get("STRATA_DATA_DIR", Path.home() / ".cache" / "strata" / "data")) / "chorales"


def parse_corpus(limit: int | None = None) -> tuple[list[Chorale], dict[str, int]]:
    """Every usable chorale of music21's corpus (first ``limit`` files only, for tests) and skip counts."""
    import warnings

    from music21 import corpus

    from strata.models.music_tokens import score_notes

    names = list(corpus.chorales.Iterator(returnType="filename"))[:limit]
    kept: list[Chorale] = []
    seen: set[str] = set()
    skipped = {"not 4/4 four-part on the sixteenth grid": 0, "duplicate": 0}
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # music21 warns about harmless quirks of some files
            parsed = score_notes(corpus.parse(name))
        if parsed is None or not parsed[0]:
            skipped["not 4/4 four-part on the sixteenth grid"] += 1
            continue
        notes, tonic, mode = parsed
        digest = hashlib.sha256(repr(notes).encode()).hexdigest()
        if digest in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(digest)
        kept.append(Chorale(name, tonic, mode, tuple(notes)))
    return kept, skipped


def load(directory: Path | None = None, *, limit: int | None = None) -> list[Chorale]:
    """The cached corpus (built on first use into ``directory``, default :func:`data_dir`)."""
    path = Path(directory or data_dir()) / (CACHE_NAME if limit is None else f"chorales-{limit}.json")
    if not path.is_file():
        chorales, skipped = parse_corpus(limit)
        if not chorales:
            raise StrataError("music21's corpus gave no usable chorales; is music21 installed with its corpus?")
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"source": "music21 corpus, Bach chorales", "skipped": skipped,
                   "chorales": [{"name": c.name, "tonic": c.tonic, "mode": c.mode,
                                 "notes": [[n.start, n.voice, n.pitch, n.dur] for n in c.notes]} for c in chorales]}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        os.replace(tmp, path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    return [Chorale(c["name"], c["tonic"], c["mode"], tuple(Note(*n) for n in c["notes"])) for c in raw["chorales"]]


def split(chorales: list[Chorale], *, holdout_fraction: float, seed: int) -> tuple[list[Chorale], list[Chorale]]:
    """(train, held-out): whole tunes are held out (shuffled by ``seed``) until ``holdout_fraction`` of pieces."""
    if not 0 < holdout_fraction < 0.5:
        raise StrataError(f"data.holdout_fraction must be in (0, 0.5), got {holdout_fraction}")
    tunes: dict[tuple[int, ...], list[Chorale]] = {}
    for c in sorted(chorales, key=lambda c: c.name):
        tunes.setdefault(c.tune(), []).append(c)
    groups = list(tunes.values())
    random.Random(seed).shuffle(groups)
    held: list[Chorale] = []
    target = max(1, round(holdout_fraction * len(chorales)))
    while groups and len(held) < target and len(groups) > 1:
        held += groups.pop()
    return [c for g in groups for c in g], held


def transpositions(chorale: Chorale) -> list[int]:
    """Shifts in [−6, +5] (every key once) that keep all of ``chorale``'s pitches in the vocabulary."""
    lo, hi = min(n.pitch for n in chorale.notes), max(n.pitch for n in chorale.notes)
    return [s for s in range(-6, 6) if PITCH_MIN <= lo + s and hi + s <= PITCH_MAX]


def augmented_sequences(chorales: list[Chorale], *, transpose: bool = True) -> list[list[int]]:
    """Token sequences of every chorale in every allowed transposition (or as written)."""
    return [c.transposed(s).tokens() for c in chorales for s in (transpositions(c) if transpose else [0])]


def bar_starts(seq: list[int]) -> list[int]:
    """Indices of the BAR tokens of a sequence: where training windows may start."""
    bar = TOKEN_ID["BAR"]
    return [i for i, t in enumerate(seq) if t == bar]


__all__ = ["Chorale", "augmented_sequences", "bar_starts", "data_dir", "load", "parse_corpus", "split", "transpositions"]
