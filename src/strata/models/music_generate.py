"""Sampling four-part music from the music model under a grammar, a key and a cadence plan.

Constrained decoding: at every step :class:`Grammar` lists the tokens that keep the sequence
well formed, every other logit is set to −∞ before sampling, so decoding never fails and the
piece has exactly the requested number of bars. The rules:

- after the prompt ``BOS KEY``: ``BAR``;
- after ``BAR`` or a note's ``DUR``: ``POS_q`` later in the bar (only where some voice is free),
  ``VOICE_v`` at the current onset (v above the last voice there, voice v not still sounding),
  ``BAR`` (not after the last bar) or ``EOS`` (only in the last bar, once the plan is done);
- after ``POS``: ``VOICE``;  after ``VOICE``: ``PITCH``;  after ``PITCH``: ``DUR_d`` with d no
  longer than the time left in the piece or before that voice's next planned note.

So every voice is monophonic and nothing sounds past the last bar line.

Cadence (``cadence=True``): the last two chords are planned, the model only voices them. The
plan is a set of anchors — (onset, voice, allowed pitch classes, duration) — that the grammar
enforces: earlier notes of an anchored voice are cut so the voice is free at the anchor, the
onset cannot be skipped, and the anchored note's pitch must lie in its pitch-class set while
the model picks the octave and the chord member from its own (masked) distribution.

- beat 4 of the second-to-last bar: the bass on the dominant (scale degree 5), a quarter;
- the whole last bar: the tonic triad in root position — bass on the tonic, soprano, alto
  and tenor on triad tones, the third always present (the tenor is forced to it when the upper
  two voices did not take it) so the final chord states the mode.

Bass 5 → 1 under a tonic triad is an authentic cadence (V–I when the model harmonizes beat 4
as a dominant, which it learned from Bach, who does so at nearly every phrase end).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from strata.errors import OpError
from strata.models.music_model import MusicModel
from strata.models.music_tokens import MAX_DUR, PITCH_MAX, PITCH_MIN, STEPS_PER_BAR, TOKEN_ID, VOCAB, VOICES, Note

TONICS = {"C": 0, "B#": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "FB": 4, "F": 5, "E#": 5, "F#": 6,
          "GB": 6, "G": 7, "G#": 8, "AB": 8, "A": 9, "A#": 10, "BB": 10, "B": 11, "CB": 11}
MODES = {"major": "maj", "minor": "min"}
MAJOR_SCALE = frozenset({0, 2, 4, 5, 7, 9, 11})
MINOR_SCALE = frozenset({0, 2, 3, 5, 7, 8, 10, 9, 11})  # natural minor + raised 6th and 7th (melodic/harmonic)

_BAR, _EOS = TOKEN_ID["BAR"], TOKEN_ID["EOS"]
_POS = [TOKEN_ID[f"POS_{p}"] for p in range(STEPS_PER_BAR)]
_VOICE = [TOKEN_ID[f"VOICE_{v}"] for v in range(VOICES)]
_PITCH0, _DUR0 = TOKEN_ID[f"PITCH_{PITCH_MIN}"], TOKEN_ID["DUR_1"]


def parse_key(key: str, mode: str) -> tuple[int, str]:
    """(tonic pitch class, "maj"/"min") from a tonic name ("C", "F#", "Bb") and "major"/"minor"."""
    name = key.strip().upper().replace("♯", "#").replace("♭", "B")
    if name not in TONICS:
        raise OpError(f"unknown key {key!r}; use a tonic name such as C, G, F#, Bb, Eb", param="key")
    if mode not in MODES:
        raise OpError(f"unknown mode {mode!r}; use major or minor", param="mode")
    return TONICS[name], MODES[mode]


def scale_of(tonic: int, mode: str) -> frozenset[int]:
    """Pitch classes that count as in the key (minor: natural, harmonic and melodic forms together)."""
    return frozenset((tonic + d) % 12 for d in (MAJOR_SCALE if mode == "maj" else MINOR_SCALE))


@dataclass(frozen=True)
class Anchor:
    """A planned note: voice ``voice`` starts at ``step`` with a pitch class in ``pcs``, lasting ``dur``."""

    step: int
    voice: int
    pcs: frozenset[int]
    dur: int


def cadence_plan(n_bars: int, tonic: int, mode: str) -> tuple[list[Anchor], dict[int, frozenset[int]]]:
    """Anchors of the final authentic cadence and the pitch classes the final chord must contain."""
    third = (tonic + (4 if mode == "maj" else 3)) % 12
    triad = frozenset({tonic, third, (tonic + 7) % 12})
    end = (n_bars - 1) * STEPS_PER_BAR
    anchors = [Anchor(end, v, triad, STEPS_PER_BAR) for v in range(VOICES - 1)]
    anchors.append(Anchor(end, VOICES - 1, frozenset({tonic}), STEPS_PER_BAR))
    if n_bars >= 2:
        anchors.append(Anchor(end - 4, VOICES - 1, frozenset({(tonic + 7) % 12}), 4))
    return anchors, {end: frozenset({tonic, third})}


@dataclass
class Grammar:
    """Which tokens may come next (see the module docstring); feed it every emitted token."""

    n_bars: int
    anchors: list[Anchor] = field(default_factory=list)
    required: dict[int, frozenset[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.end = self.n_bars * STEPS_PER_BAR
        self.by_slot = {(a.step, a.voice): a for a in self.anchors}
        self.pending = set(self.by_slot)
        self.chosen: dict[int, set[int]] = {}  # anchor step → pitch classes already placed there
        self.state = "start"  # start | free | voice | pitch | dur | done
        self.bar, self.pos, self.last_voice = -1, None, -1
        self.busy = [0] * VOICES  # step until which each voice sounds
        self.voice = self.pitch = None

    # -- time helpers
    def _now(self) -> int:
        return self.bar * STEPS_PER_BAR + (self.pos or 0)

    def _pending_at(self, step: int) -> list[int]:
        return sorted(v for s, v in self.pending if s == step)

    def _pending_in_bar_before(self, step: int) -> bool:
        """A planned onset of this bar lies before ``step`` (so ``step`` may not be reached yet)."""
        lo = self.bar * STEPS_PER_BAR
        return any(lo <= s < step for s, _ in self.pending)

    def _voice_ok(self, v: int, t: int) -> bool:
        waiting = self._pending_at(t)
        return v > self.last_voice and self.busy[v] <= t and not (waiting and v > waiting[0])

    # -- the rules
    def allowed(self) -> list[int]:
        """Token ids allowed next (never empty before ``done``)."""
        if self.state == "start":
            return [_BAR]
        if self.state == "voice":
            return [_VOICE[v] for v in range(VOICES) if self._voice_ok(v, self._now())]
        if self.state == "pitch":
            pcs = self._pitch_classes()
            return [_PITCH0 + p - PITCH_MIN for p in range(PITCH_MIN, PITCH_MAX + 1) if pcs is None or p % 12 in pcs]
        if self.state == "dur":
            t = self._now()
            anchor = self.by_slot.get((t, self.voice))
            if anchor is not None:
                return [_DUR0 + anchor.dur - 1]
            limit = min(MAX_DUR, self.end - t,
                        *[s - t for s, v in self.by_slot if v == self.voice and s > t])
            return [_DUR0 + d - 1 for d in range(1, limit + 1)]
        if self.state == "done":
            return []
        # state "free": after BAR or after a note
        out: list[int] = []
        here_waiting = self.pos is not None and self._pending_at(self._now())
        if self.pos is not None:
            out += [_VOICE[v] for v in range(VOICES) if self._voice_ok(v, self._now())]
        if here_waiting:
            return out
        first = 0 if self.pos is None else self.pos + 1
        for q in range(first, STEPS_PER_BAR):
            t = self.bar * STEPS_PER_BAR + q
            if t >= self.end or self._pending_in_bar_before(t):
                break
            if min(self.busy) <= t:
                out.append(_POS[q])
        if not self._pending_in_bar_before((self.bar + 1) * STEPS_PER_BAR):
            if self.bar < self.n_bars - 1:
                out.append(_BAR)
            elif not self.pending:
                out.append(_EOS)
        return out

    def _pitch_classes(self) -> frozenset[int] | None:
        t = self._now()
        anchor = self.by_slot.get((t, self.voice))
        if anchor is None:
            return None
        missing = self.required.get(t, frozenset()) - self.chosen.get(t, set())
        later = set().union(*[self.by_slot[(t, v)].pcs for v in self._pending_at(t) if v != self.voice])
        forced = (missing - later) & anchor.pcs
        return forced or anchor.pcs

    def feed(self, token: int) -> None:
        if token not in self.allowed():
            raise OpError(f"internal: token {VOCAB[token]} breaks the music grammar in state {self.state}")
        name = VOCAB[token]
        if token == _BAR:
            self.bar, self.pos, self.last_voice, self.state = self.bar + 1, None, -1, "free"
        elif token == _EOS:
            self.state = "done"
        elif name.startswith("POS_"):
            self.pos, self.last_voice, self.state = int(name[4:]), -1, "voice"
        elif name.startswith("VOICE_"):
            self.voice, self.state = int(name[6:]), "pitch"
        elif name.startswith("PITCH_"):
            self.pitch, self.state = int(name[6:]), "dur"
        else:  # DUR
            t = self._now()
            self.busy[self.voice] = t + int(name[4:])
            self.last_voice = self.voice
            if (t, self.voice) in self.pending:
                self.pending.discard((t, self.voice))
                self.chosen.setdefault(t, set()).add(self.pitch % 12)
            self.state = "free"


def sample(logits: torch.Tensor, allowed: list[int], *, temperature: float, top_p: float,
           generator: torch.Generator) -> int:
    """One token from ``allowed``: softmax(logits / temperature) over them, cut to the nucleus.

    Nucleus (top-p) sampling (Holtzman et al. 2020, "The Curious Case of Neural Text
    Degeneration", §3.1): keep the most likely tokens whose probabilities add up to ``top_p``
    (always at least one) and renormalize — the unreliable tail, where stray chromatic notes
    live, is never drawn.
    """
    masked = torch.full_like(logits, float("-inf"), dtype=torch.float64)
    masked[allowed] = logits[allowed].double() / temperature
    probs = torch.softmax(masked, dim=0)
    if top_p < 1:
        sorted_p, order = torch.sort(probs, descending=True, stable=True)
        keep = (torch.cumsum(sorted_p, 0) - sorted_p) < top_p
        probs = torch.zeros_like(probs).index_put_((order[keep],), sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def generate_tokens(model: MusicModel, *, tonic: int, mode: str, n_bars: int, seed: int,
                    temperature: float = 0.9, top_p: float = 0.95, cadence: bool = True,
                    progress=None) -> list[int]:
    """Sample a grammatical token sequence of ``n_bars`` bars in the given key.

    Args:
        model: the music model (a random one works too: the grammar still holds).
        tonic / mode: key (0–11, "maj"/"min"); the KEY token conditions the model.
        n_bars: ≥ 1 bars; the sequence has exactly this many BAR tokens.
        seed: drives all sampling (a CPU ``torch.Generator``): same seed → same tokens.
        temperature: > 0; lower is safer (more in key), higher more adventurous.
        top_p: (0, 1]: nucleus sampling (:func:`sample`); 1 samples from every allowed token.
        cadence: end on the planned authentic cadence (module docstring).
        progress: optional ``progress(bars_done, n_bars)``, called as each bar is completed.

    The context slides bar by bar when it fills: the model is re-primed with ``BOS KEY`` plus the
    most recent bars that fit in half its window (how it was trained: windows start at bar lines).
    """
    anchors, required = cadence_plan(n_bars, tonic, mode) if cadence else ([], {})
    grammar = Grammar(n_bars, anchors, required)
    prompt = [TOKEN_ID["BOS"], TOKEN_ID[f"KEY_{tonic}_{mode}"]]
    tokens = list(prompt)
    g = torch.Generator().manual_seed(seed)
    window = model.cfg.n_positions
    past, feed = None, list(tokens)
    context_len = 0
    while grammar.state != "done":
        if context_len + len(feed) > window:
            bars = [i for i, t in enumerate(tokens) if t == _BAR]
            keep = next((b for b in bars if len(tokens) - b <= window // 2), bars[-1])
            past, feed = None, prompt + tokens[keep:]
            context_len = 0
        logits, past = model.logits(torch.tensor([feed]), past)
        context_len += len(feed)
        allowed = grammar.allowed()
        if len(allowed) == 1:
            token = allowed[0]
        else:
            token = sample(logits, allowed, temperature=temperature, top_p=top_p, generator=g)
        grammar.feed(token)
        tokens.append(token)
        feed = [token]
        if progress is not None and (token == _EOS or (token == _BAR and grammar.bar > 0)):
            progress(n_bars if token == _EOS else grammar.bar, n_bars)  # bars completed
    return tokens


def fit_bars(duration_s: float, tempo_bpm: float) -> tuple[int, float, float]:
    """(bars, fitted tempo, release) so the music plus its release lasts exactly ``duration_s``.

    The last chord needs time to ring out: ``release_s = min(1, duration_s / 8)``. Whole 4/4 bars
    at ``tempo_bpm`` fill the rest (rounded to the nearest count, at least one), then the tempo is
    adjusted so they fill it exactly: bars · 4 beats · 60 / tempo = duration_s − release_s.
    """
    release = min(1.0, duration_s / 8)
    music_s = duration_s - release
    bars = max(1, round(music_s * tempo_bpm / 240))
    return bars, 240 * bars / music_s, release


def in_key_fraction(notes: list[Note], tonic: int, mode: str) -> float:
    """Share of notes whose pitch class is in the key's scale (:func:`scale_of`)."""
    scale = scale_of(tonic, mode)
    return float(np.mean([n.pitch % 12 in scale for n in notes])) if notes else 0.0


__all__ = ["Anchor", "Grammar", "MODES", "TONICS", "cadence_plan", "fit_bars", "generate_tokens", "in_key_fraction",
           "parse_key", "sample", "scale_of"]
