"""Tokenization of polyphonic scores for the music model (groundwork for ``sound.music``).

A REMI-style event vocabulary (Huang & Yang 2020, "Pop Music Transformer", §3) on a
sixteenth-note grid, with an explicit voice per note so four-part chorales keep their parts:

    BOS KEY_<tonic>_<mode> BAR POS_0 VOICE_0 PITCH_72 DUR_4 VOICE_1 PITCH_67 DUR_4 ... BAR ... EOS

- ``KEY_t_m``: tonic pitch class t (0 = C) and mode (maj/min) — the model is conditioned on it;
- ``BAR``: start of a bar; ``POS_p``: onset p sixteenths into the bar (p < 16, i.e. up to 4/4);
- per note at that onset: ``VOICE_v`` (0 = soprano … 3 = bass), ``PITCH_n`` (MIDI 28–96),
  ``DUR_d`` (d sixteenths, 1–32; longer notes are clipped to two bars).

Time is in sixteenths, so a score is tempo-free; ``to_midi`` applies a tempo. Encoding then
decoding returns the same notes (tested), so what the model learns is exactly what plays.
:func:`score_notes` reads a four-part music21 score (e.g. a Bach chorale from music21's
bundled corpus) into Notes and its key; the model and its trainer come with the music work.
"""

from __future__ import annotations

from dataclasses import dataclass

from strata.errors import MediaError

STEPS_PER_BAR = 16
MAX_DUR = 32
PITCH_MIN, PITCH_MAX = 28, 96
VOICES = 4
SPECIAL = ["PAD", "BOS", "EOS", "BAR"]
KEYS = [f"KEY_{t}_{m}" for m in ("maj", "min") for t in range(12)]
VOCAB: list[str] = (SPECIAL + KEYS + [f"POS_{p}" for p in range(STEPS_PER_BAR)] + [f"VOICE_{v}" for v in range(VOICES)]
                    + [f"PITCH_{n}" for n in range(PITCH_MIN, PITCH_MAX + 1)] + [f"DUR_{d}" for d in range(1, MAX_DUR + 1)])
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}


@dataclass(frozen=True, order=True)
class Note:
    """One note on the sixteenth grid: onset ``start`` and length ``dur`` in sixteenths."""

    start: int
    voice: int
    pitch: int
    dur: int


def encode(notes: list[Note], *, tonic: int, mode: str) -> list[int]:
    """Token ids of ``notes`` (any order) in the key ``tonic`` (0–11) ``mode`` ("maj"/"min")."""
    if mode not in ("maj", "min") or not 0 <= tonic < 12:
        raise MediaError(f"key must be a tonic 0–11 and mode maj/min, got {tonic} {mode}")
    toks = ["BOS", f"KEY_{tonic}_{mode}"]
    bar, pos = -1, -1
    for n in sorted(notes):
        if not (PITCH_MIN <= n.pitch <= PITCH_MAX and 0 <= n.voice < VOICES and n.dur >= 1 and n.start >= 0):
            raise MediaError(f"note {n} is outside the vocabulary (pitch {PITCH_MIN}–{PITCH_MAX}, voice 0–{VOICES - 1})")
        b, p = divmod(n.start, STEPS_PER_BAR)
        while bar < b:
            toks.append("BAR")
            bar, pos = bar + 1, -1
        if p != pos:
            toks.append(f"POS_{p}")
            pos = p
        toks += [f"VOICE_{n.voice}", f"PITCH_{n.pitch}", f"DUR_{min(n.dur, MAX_DUR)}"]
    toks.append("EOS")
    return [TOKEN_ID[t] for t in toks]


def decode(ids: list[int]) -> tuple[list[Note], tuple[int, str] | None]:
    """Notes and key from token ids; incomplete or out-of-order groups are skipped (model output)."""
    notes: list[Note] = []
    key: tuple[int, str] | None = None
    bar, pos, voice, pitch = -1, 0, None, None
    for i in ids:
        t = VOCAB[i] if 0 <= i < len(VOCAB) else "PAD"
        kind, _, arg = t.partition("_")
        if t == "EOS":
            break
        if kind == "KEY":
            tonic, mode = arg.split("_")
            key = (int(tonic), mode)
        elif t == "BAR":
            bar, pos = bar + 1, 0
        elif kind == "POS":
            pos = int(arg)
        elif kind == "VOICE":
            voice, pitch = int(arg), None
        elif kind == "PITCH" and voice is not None:
            pitch = int(arg)
        elif kind == "DUR" and voice is not None and pitch is not None:
            notes.append(Note(max(bar, 0) * STEPS_PER_BAR + pos, voice, pitch, int(arg)))
            voice, pitch = None, None
    return notes, key


def score_notes(score) -> tuple[list[Note], int, str] | None:  # score: music21.stream.Score
    """Notes (voice = part index), tonic pitch class and mode of a 4/4 score with up to 4 parts.

    Ties are merged; a pickup bar is shifted so bar lines fall on multiples of 16. Returns None
    when the score does not fit the vocabulary (not 4/4, more than 4 parts, notes off the
    sixteenth grid such as triplets, or pitches outside the range) — the corpus builder skips it.
    """
    ts = score.recurse().getElementsByClass("TimeSignature").first()
    parts = list(score.parts)
    if ts is None or ts.ratioString != "4/4" or not 1 <= len(parts) <= VOICES:
        return None
    notes: list[Note] = []
    for voice, part in enumerate(parts):
        measures = part.getElementsByClass("Measure")
        pickup = float(measures[0].paddingLeft) if len(measures) else 0.0
        for n in part.stripTies().flatten().notes:
            start, dur = (float(n.offset) + pickup) * 4, float(n.quarterLength) * 4
            if start != int(start) or dur != int(dur) or dur < 1:
                return None
            for pitch in n.pitches:
                if not PITCH_MIN <= pitch.midi <= PITCH_MAX:
                    return None
                notes.append(Note(int(start), voice, pitch.midi, min(int(dur), MAX_DUR)))
    key = score.analyze("key")
    return sorted(notes), key.tonic.pitchClass, "maj" if key.mode == "major" else "min"


def to_midi(notes: list[Note], *, tempo_bpm: float, programs: list[int] | None = None):  # -> Midi
    """A Midi value: one General MIDI instrument per voice (``programs``, default all 0 = piano)."""
    import pretty_midi

    from strata.media.midi import Midi

    sixteenth = 60.0 / tempo_bpm / 4
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo_bpm)
    programs = programs or [0] * VOICES
    insts = [pretty_midi.Instrument(program=programs[v], name=f"voice {v}") for v in range(VOICES)]
    for n in notes:
        insts[n.voice].notes.append(pretty_midi.Note(velocity=80, pitch=n.pitch, start=n.start * sixteenth,
                                                     end=(n.start + n.dur) * sixteenth))
    pm.instruments += [i for i in insts if i.notes]
    return Midi.from_pretty_midi(pm)


__all__ = ["Note", "TOKEN_ID", "VOCAB", "decode", "encode", "score_notes", "to_midi"]
