"""MIDI → audio through a General MIDI SoundFont (TinySoundFont)."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from strata.errors import MediaError
from strata.media.codec import decode_value, encode_value
from strata.media.midi import Midi
from strata.ops.sound import load_midi, render_midi


def chord_midi() -> Midi:
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(program=0)
    for pitch in (60, 64, 67):  # C major, from 0.5 s to 1.5 s
        piano.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=0.5, end=1.5))
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes.append(pretty_midi.Note(velocity=110, pitch=36, start=1.0, end=1.1))  # kick
    pm.instruments += [piano, drums]
    return Midi.from_pretty_midi(pm)


def test_render_places_notes_in_time_and_is_reproducible(tmp_path):
    midi = chord_midi()
    audio = render_midi(midi, sample_rate_hz=48000, tail_s=0.5)
    assert audio.channels == 2 and audio.duration_s == pytest.approx(2.0, abs=0.01)
    x = np.abs(audio.samples).max(axis=0)
    assert x[: int(0.49 * 48000)].max() == 0  # silence before the first note-on
    assert x[int(0.55 * 48000) : int(1.4 * 48000)].max() > 0.05  # the chord sounds
    # a C major chord: energy at C4 (261.6 Hz) well above C#4 (277.2 Hz)
    seg = audio.samples[0, int(0.6 * 48000) : int(1.4 * 48000)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    freqs = np.fft.rfftfreq(len(seg), 1 / 48000)
    at = lambda f: spec[np.argmin(np.abs(freqs - f))]  # noqa: E731
    assert at(261.6) > 5 * at(277.2)
    assert np.array_equal(render_midi(midi, tail_s=0.5).samples, audio.samples)
    path = tmp_path / "chord.mid"
    path.write_bytes(midi.data)
    assert load_midi(path=str(path)).data == midi.data
    assert decode_value(*encode_value(midi)).data == midi.data


def test_bad_midi_and_soundfont_are_refused(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd garbage")
    with pytest.raises(MediaError, match="not a valid MIDI file"):
        load_midi(path=str(bad))
    with pytest.raises(MediaError, match="cannot load SoundFont"):
        render_midi(chord_midi(), soundfont=str(bad))


def test_mid_file_carries_provenance_in_a_text_event():
    import io

    import mido

    from strata.media.writers import encode_file
    from strata.provenance.metadata import Provenance

    data = encode_file(".mid", chord_midi(), Provenance(source="generated", created=None, op="sound.music"))
    texts = [m.text for m in mido.MidiFile(file=io.BytesIO(data)).tracks[0] if m.type == "text"]
    assert texts and texts[0].startswith('strata provenance {') and '"op":"sound.music"' in texts[0]
    assert len(Midi(data).parse().instruments) == 2  # still the same music


def test_music_tokens_round_trip_and_play():
    from strata.models.music_tokens import VOCAB, Note, decode, encode, to_midi

    rng = np.random.default_rng(0)
    notes = sorted({Note(int(s), v, int(p), int(d))
                    for s, v, p, d in zip(rng.integers(0, 64, 60), rng.integers(0, 4, 60), rng.integers(40, 80, 60),
                                          rng.integers(1, 17, 60))})
    ids = encode(notes, tonic=7, mode="min")
    assert VOCAB[ids[0]] == "BOS" and VOCAB[ids[1]] == "KEY_7_min" and VOCAB[ids[-1]] == "EOS"
    assert sum(VOCAB[i] == "BAR" for i in ids) == 4  # 64 sixteenths = 4 bars of 4/4
    back, key = decode(ids)
    assert back == notes and key == (7, "min")
    pm = to_midi(back, tempo_bpm=120).parse()
    assert sum(len(i.notes) for i in pm.instruments) == len(notes)
    first = min(notes)
    assert min(n.start for i in pm.instruments for n in i.notes) == pytest.approx(first.start * 0.125)
    with pytest.raises(MediaError, match="outside the vocabulary"):
        encode([Note(0, 0, 120, 4)], tonic=0, mode="maj")


def test_a_bundled_bach_chorale_becomes_tokens_and_back():
    music21 = pytest.importorskip("music21")  # a training dependency, not a runtime one
    from strata.models.music_tokens import decode, encode, score_notes

    notes, tonic, mode = score_notes(music21.corpus.parse("bach/bwv66.6"))
    assert (tonic, mode) == (6, "min")  # F-sharp minor
    assert {n.voice for n in notes} == {0, 1, 2, 3}
    soprano = [n for n in notes if n.voice == 0]
    assert (soprano[0].start, soprano[0].pitch, soprano[0].dur) == (12, 73, 2)  # pickup: beat 4 of bar 0
    back, key = decode(encode(notes, tonic=tonic, mode=mode))
    assert back == notes and key == (6, "min")


def notes_midi(spans: list[tuple[float, float]]) -> Midi:
    pm = pretty_midi.PrettyMIDI(initial_tempo=72)
    piano = pretty_midi.Instrument(program=0)
    for start, end in spans:
        piano.notes.append(pretty_midi.Note(velocity=100, pitch=60, start=start, end=end))
    pm.instruments.append(piano)
    return Midi.from_pretty_midi(pm)


def test_fit_music_plays_the_score_to_an_exact_length():
    from strata.media.audio import Audio
    from strata.ops.sound import MUSIC_FADE_S, fit_music

    midi = notes_midi([(0.0, 3.0), (3.0, 7.0)])  # the score ends at 7 s
    # 8 s leaves min(1, 8/8) = 1 s of release after 7 s of notes: played as written, so it
    # equals the plain rendering with a 1 s tail (and the last 50 ms faded)
    same = fit_music(midi, duration_s=8.0)
    plain = render_midi(midi, tail_s=1.0).samples[:, : 8 * 48000].copy()
    fade = round(MUSIC_FADE_S * 48000)
    plain[:, -fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    assert same.num_samples == 8 * 48000
    np.testing.assert_array_equal(same.samples, plain)

    # fitted to a 10 s track: notes stretched by (10 − 1) / 7, so the second note starts at
    # 3 · 9/7 ≈ 3.857 s; the length is the track's to the sample
    track = Audio.mono(np.zeros(441_000, np.float32), 44100)
    fitted = fit_music(midi, track)
    assert fitted.num_samples == 480_000 and fitted.sample_rate_hz == 48000
    assert np.array_equal(fit_music(midi, duration_s=10.0).samples, fitted.samples)
    onset = round(3 * 9 / 7 * 48000)
    env = np.abs(fitted.samples).max(axis=0)
    assert env[onset : onset + 2400].max() > 3 * env[onset - 4800 : onset - 2400].max()  # re-struck there


def test_fit_music_refuses_bad_input_clearly():
    from strata.errors import OpError
    from strata.media.audio import Audio
    from strata.ops.sound import fit_music

    midi = notes_midi([(0.0, 4.0)])
    with pytest.raises(OpError, match="give fit_to .* or duration_s"):
        fit_music(midi)
    with pytest.raises(OpError, match="give fit_to .* or duration_s"):
        fit_music(midi, Audio.mono(np.zeros(4800, np.float32), 48000), duration_s=3.0)
    # 11 s of notes at 72 bpm (3.33 s a bar) is about 3 bars
    with pytest.raises(OpError, match=r"2\.75× as long, beyond max_stretch 1\.5; compose about 3 bars at 72 bpm") as e:
        fit_music(midi, duration_s=12.0)
    assert e.value.param == "max_stretch"
    assert fit_music(midi, duration_s=12.0, max_stretch=3).num_samples == 12 * 48000
    from strata.media.midi import render_midi as synthesize

    with pytest.raises(MediaError, match="stretch must be > 0"):
        synthesize(midi, stretch=0)
