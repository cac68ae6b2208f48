"""MIDI: symbolic music as a value (Standard MIDI File bytes) and its rendering to Audio.

``Midi`` holds SMF bytes (what ``sound.music`` will produce and what .mid files contain); the
store keeps the bytes as they are. :func:`render_midi` plays it through a General MIDI
SoundFont with TinySoundFont (a self-contained synthesizer; no FluidSynth system library):
note events are scheduled sample-accurately and the synth renders the spans between them,
so the same file and SoundFont always give the same samples.

SoundFonts: pretty_midi ships TimGM6mb.sf2 (6 MB, the default); Debian's
``fluid-soundfont-gm`` installs the larger FluidR3_GM (148 MB) at
``/usr/share/sounds/sf2/FluidR3_GM.sf2`` — pass its path for a richer sound.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from strata.errors import MediaError
from strata.media.audio import Audio
from strata.media.codec import register_codec

DRUM_CHANNEL = 9  # General MIDI: channel 10 (0-based 9) is percussion
MAX_MIDI_SECONDS = 3600.0


@dataclass(frozen=True, eq=False)
class Midi:
    """A Standard MIDI File, as bytes."""

    data: bytes

    def parse(self):  # -> pretty_midi.PrettyMIDI
        import pretty_midi

        try:
            return pretty_midi.PrettyMIDI(io.BytesIO(self.data))
        except Exception as e:  # mido raises OSError/EOFError/ValueError/KeySignatureError on bad files
            raise MediaError(f"not a valid MIDI file ({type(e).__name__}: {e})") from e

    @classmethod
    def from_pretty_midi(cls, pm) -> "Midi":  # pm: pretty_midi.PrettyMIDI
        buf = io.BytesIO()
        pm.write(buf)
        return cls(buf.getvalue())

    def __repr__(self) -> str:
        return f"Midi({len(self.data)} bytes)"


def default_soundfont() -> Path:
    """pretty_midi's bundled General MIDI SoundFont (TimGM6mb.sf2)."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def render_midi(midi: Midi, *, soundfont: str | os.PathLike[str] | None = None, sample_rate_hz: int = 48000,
                tail_s: float = 1.0, gain_db: float = 0.0, stretch: float = 1.0) -> Audio:
    """Synthesize ``midi`` to stereo Audio with a General MIDI SoundFont.

    Args:
        midi: the score.
        soundfont: .sf2/.sf3 path (default: :func:`default_soundfont`).
        sample_rate_hz: output rate (default 48000).
        tail_s: extra time after the last note-off for releases and reverb (default 1 s).
        gain_db: SoundFont gain in dB (default 0).
        stretch: > 0, every note time is multiplied by it (default 1; 1.25 plays the score at
            0.8× its tempo). The tail is not stretched.

    Raises:
        MediaError: the MIDI or the SoundFont cannot be read, or the piece is too long.
    """
    import tinysoundfont

    if not stretch > 0:
        raise MediaError(f"stretch must be > 0, got {stretch}")
    pm = midi.parse()
    end_s = pm.get_end_time() * stretch
    if end_s > MAX_MIDI_SECONDS:
        raise MediaError(f"the MIDI lasts {end_s:.0f} s; strata renders at most {MAX_MIDI_SECONDS:.0f} s")
    synth = tinysoundfont.Synth(samplerate=sample_rate_hz, gain=gain_db)
    sf_path = Path(soundfont) if soundfont else default_soundfont()
    try:
        sfid = synth.sfload(str(sf_path))
    except Exception as e:  # tinysoundfont raises its own exception types for unreadable files
        raise MediaError(f"cannot load SoundFont {str(sf_path)!r} ({e}); give a .sf2/.sf3 file") from e

    # (sample, order, action): note-offs sort before note-ons at the same sample (re-strikes)
    events: list[tuple[int, int, str, int, int, int]] = []
    channel = 0
    for inst in pm.instruments:
        if inst.is_drum:
            chan = DRUM_CHANNEL
            synth.program_select(chan, sfid, 128, 0, is_drums=True)
        else:
            if channel == DRUM_CHANNEL:
                channel += 1
            if channel > 15:
                raise MediaError("the MIDI has more than 15 melodic instruments; General MIDI has 15 melodic channels")
            chan = channel
            channel += 1
            synth.program_select(chan, sfid, 0, inst.program)
        for n in inst.notes:
            events.append((round(n.start * stretch * sample_rate_hz), 1, "on", chan, n.pitch, n.velocity))
            events.append((round(n.end * stretch * sample_rate_hz), 0, "off", chan, n.pitch, 0))
    events.sort()
    total = round((end_s + tail_s) * sample_rate_hz)
    out = np.zeros((total, 2), np.float32)
    pos = 0
    for sample, _, action, chan, key, vel in events:
        if sample > pos:
            out[pos:sample] = np.frombuffer(synth.generate(sample - pos), np.float32).reshape(-1, 2)
            pos = sample
        if action == "on":
            synth.noteon(chan, key, vel)
        else:
            synth.noteoff(chan, key)
    if total > pos:
        out[pos:] = np.frombuffer(synth.generate(total - pos), np.float32).reshape(-1, 2)
    return Audio(out.T, sample_rate_hz)


register_codec("midi", Midi, lambda m: m.data, lambda d: Midi(bytes(d)))

__all__ = ["Midi", "default_soundfont", "render_midi"]
