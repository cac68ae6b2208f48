"""Sound layer: narration with word timings, subtitles from them, and mixing to a loudness target.

- ``sound.speech``: text → Audio + Words (piper neural voice for English, espeak-ng for ~100
  other languages and as the fallback; see :mod:`strata.models.speech`).
- ``sound.subtitles``: Words → Subtitles (readable cues; written as .srt / .vtt).
- ``sound.mix``: tracks with gain, offset and fades; music ducked under the voice by a
  sidechain on the voice's envelope; integrated loudness normalized (ITU-R BS.1770-4 via
  FFmpeg's ebur128 meter) with a true-peak ceiling (4× oversampled peak, as BS.1770-4 Annex 2).
- ``sound.load_audio``: a WAV/FLAC/OGG file as Audio; ``sound.load_midi`` / ``sound.render_midi``:
  a MIDI score and its rendering through a General MIDI SoundFont.
- ``sound.music``: four-part music from the built-in chorale model (key, mode, tempo, exact
  length, cadence, instruments, seed) as Audio and MIDI.
- ``sound.fit_music``: a score played to last exactly as long as another track (e.g. a film
  whose length comes from its narration): composing stays cached when only the length changes.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from strata.errors import OpError
from strata.media.audio import Audio, load_audio as _load_audio, resample, resample_rows, with_channels
from strata.media.midi import Midi
from strata.media.timed_text import Subtitles, TimedText, Words
from strata.models import speech as _speech  # registers the piper voice with the model registry
from strata.workflow.node import InputFile, node

MAX_TEXT_CHARS = 20_000
CODEC_HEADROOM_DB = 0.3

# ---------------------------------------------------------------- speech


@node("sound.speech", layer="sound", version=1, model="speech", outputs={"audio": Audio, "words": Words})
def speech(
    *,
    text: Annotated[str, Field(max_length=MAX_TEXT_CHARS, description="what to say")],
    language: Annotated[str, Field(max_length=16, description="language code: en, en-us, de, fr, es, ...")] = "en-us",
    rate: Annotated[float, Field(ge=0.5, le=2.0, description="speaking rate (1 = the voice's normal pace)")] = 1.0,
    sentence_pause_s: Annotated[float, Field(ge=0, le=5, description="silence added between sentences, s")] = 0.35,
    volume: Annotated[float, Field(ge=0, le=4, description="linear gain on the voice (1 = as synthesized)")] = 1.0,
    variation: Annotated[float, Field(ge=0, le=1, description="piper's prosody noise (0 = reproducible)")] = 0.0,
    model: Annotated[str | None, Field(description="voice: piper-joe-en_US-medium (default, English) or espeak-ng")] = None,
    loaded_model: Any = None,
) -> dict[str, Any]:
    """Speak ``text``; return the audio and each word's start/end time.

    Sentences are spoken one at a time and joined with ``sentence_pause_s`` of silence. Word
    times come from the engine: piper's per-phoneme durations (its ONNX graph patched to
    output them), espeak-ng's word and phoneme events.

    Args:
        text: what to say (1–20,000 characters; not only whitespace or punctuation).
        language: language code (default "en-us"). The piper voice speaks English only;
            espeak-ng knows ~100 languages (en, de, fr, es, it, pt, ja, zh, ...).
        rate: speaking rate in [0.5, 2] (default 1).
        sentence_pause_s: pause between sentences in [0, 5] s (default 0.35).
        volume: gain in [0, 4] (default 1).
        variation: [0, 1] (default 0): piper's trained prosody/duration noise, scaled. The
            noise comes from onnxruntime's unseedable generator, so only 0 gives the same
            bytes every run (strata's rule); 1 sounds a little livelier.
        model: registered speech model id: "piper-joe-en_US-medium" (the default when
            installed: neural, English) or "espeak-ng" (formant, many languages; the fallback).
        loaded_model: injected by the engine (the voice the registry loaded for ``model``).
    """
    sentences = _speech.split_sentences(text)
    if not sentences or not any(_speech.text_words(s) for s in sentences):
        raise OpError("text is empty: give at least one word to speak", param="text")
    engine = loaded_model if loaded_model is not None else _load_voice(model)
    lang = language.strip().lower().replace("_", "-")
    if not engine.speaks(lang):
        if engine.engine == "piper":
            raise OpError(f"the piper voice speaks English only, not {language!r}; set model: espeak-ng "
                          "for other languages", param="language")
        raise OpError(f"espeak-ng has no voice for language {language!r}; use a code such as en, en-us, de, fr, "
                      f"es, it, pt, ja, zh ({len(engine.languages)} are available)", param="language")

    pieces: list[np.ndarray] = []
    words: list[TimedText] = []
    t = 0.0
    rate_hz = engine.sample_rate_hz
    pause = np.zeros(round(sentence_pause_s * rate_hz), np.float32)
    for i, sentence in enumerate(sentences):
        if engine.engine == "piper":
            utt = engine.speak(sentence, rate=rate, variation=variation)
        else:
            utt = engine.speak(sentence, language=lang, rate=rate)
        words += [TimedText(w.text, t + w.start_s, t + w.end_s) for w in utt.words]
        pieces.append(utt.samples)
        t += len(utt.samples) / rate_hz
        if i < len(sentences) - 1 and len(pause):
            pieces.append(pause)
            t += len(pause) / rate_hz
    samples = np.concatenate(pieces) * np.float32(volume)
    return {"audio": Audio.mono(samples, rate_hz), "words": Words(tuple(words))}


def _load_voice(model: str | None) -> Any:
    """The voice from the default registry (for calls from Python, outside the engine)."""
    from strata.models.registry import default_registry

    return default_registry().load("speech", {"model": model})


# ---------------------------------------------------------------- subtitles


@node("sound.subtitles", layer="sound", version=1)
def subtitles(
    words: Words,
    *,
    max_chars: Annotated[int, Field(ge=8, le=200, description="longest cue, characters")] = 42,
    max_duration_s: Annotated[float, Field(gt=0.5, le=20, description="longest cue, s")] = 5.0,
    max_gap_s: Annotated[float, Field(ge=0, le=10, description="a pause longer than this starts a new cue, s")] = 0.6,
) -> Subtitles:
    """Group word timings into subtitle cues.

    A cue starts at its first word's start and ends at its last word's end (so cues match the
    voice exactly); a new cue begins when adding a word would exceed ``max_chars`` or
    ``max_duration_s``, after a sentence end, or after a pause longer than ``max_gap_s``.

    Args:
        words: word timings from ``sound.speech`` (or several joined).
        max_chars: [8, 200] (default 42, the common broadcast line length).
        max_duration_s: (0.5, 20] s (default 5).
        max_gap_s: [0, 10] s (default 0.6).
    """
    if len(words) == 0:
        raise OpError("there are no words to make subtitles from", param="words")
    cues: list[TimedText] = []
    group: list[TimedText] = []

    def flush() -> None:
        if group:
            cues.append(TimedText(" ".join(w.text for w in group), group[0].start_s, group[-1].end_s))
            group.clear()

    for w in words.items:
        if group:
            text_len = len(" ".join(x.text for x in group)) + 1 + len(w.text)
            if (text_len > max_chars or w.end_s - group[0].start_s > max_duration_s
                    or w.start_s - group[-1].end_s > max_gap_s or group[-1].text[-1] in ".!?…"):
                flush()
        group.append(w)
    flush()
    return Subtitles(tuple(cues))


@node("sound.load_audio", layer="io", version=1)
def load_audio(*, path: InputFile) -> Audio:
    """Load a WAV, FLAC or OGG file (anything libsndfile reads) as float32 audio.

    Args:
        path: the audio file.
    """
    return _load_audio(path)


@node("sound.load_midi", layer="io", version=1)
def load_midi(*, path: InputFile) -> Midi:
    """Load a Standard MIDI File (.mid).

    Args:
        path: the MIDI file (checked by parsing it).
    """
    from pathlib import Path

    midi = Midi(Path(path).read_bytes())
    midi.parse()  # refuse a broken file here, not at render time
    return midi


@node("sound.render_midi", layer="sound", version=1)
def render_midi(
    midi: Midi,
    *,
    soundfont: Annotated[InputFile | None, Field(description=".sf2/.sf3 General MIDI SoundFont; empty = TimGM6mb")] = None,
    sample_rate_hz: Annotated[Literal[44100, 48000], Field(description="output rate, Hz")] = 48000,
    tail_s: Annotated[float, Field(ge=0, le=30, description="time after the last note for releases, s")] = 1.0,
) -> Audio:
    """Play a MIDI score through a General MIDI SoundFont (TinySoundFont), to stereo audio.

    Args:
        midi: the score (sound.load_midi, or the music model's output).
        soundfont: a .sf2/.sf3 file (default: pretty_midi's bundled TimGM6mb; Debian's
            fluid-soundfont-gm gives /usr/share/sounds/sf2/FluidR3_GM.sf2, a fuller sound).
        sample_rate_hz: 44100 or 48000 (default 48000).
        tail_s: [0, 30] s (default 1).
    """
    from strata.media.midi import render_midi as _render

    return _render(midi, soundfont=soundfont, sample_rate_hz=sample_rate_hz, tail_s=tail_s)


# ---------------------------------------------------------------- music

DEFAULT_INSTRUMENTS = ["Violin", "Violin", "Viola", "Cello"]  # a string quartet: soprano, alto, tenor, bass
MUSIC_FADE_S = 0.05  # the very end is faded so cutting the release tail to the exact length never clicks


def instrument_programs(instruments: list[str | int]) -> list[int]:
    """General MIDI program numbers (0–127) for one instrument per voice, or one for all four.

    Names are General MIDI names, any case ("Violin", "choir aahs", "Acoustic Grand Piano").
    """
    import pretty_midi

    from strata.models.music_tokens import VOICES

    if len(instruments) not in (1, VOICES):
        raise OpError(f"give 1 or {VOICES} instruments (soprano, alto, tenor, bass), got {len(instruments)}",
                      param="instruments")
    programs = []
    for inst in instruments:
        if isinstance(inst, str) and inst.strip().isdigit():  # "41" from a command line or a form
            inst = int(inst)
        if isinstance(inst, int) and not isinstance(inst, bool):
            if not 0 <= inst <= 127:
                raise OpError(f"General MIDI programs are 0–127, got {inst}", param="instruments")
            programs.append(inst)
            continue
        try:
            programs.append(pretty_midi.instrument_name_to_program(str(inst).strip()))
        except ValueError:
            raise OpError(f"unknown instrument {inst!r}; use a General MIDI name such as Violin, Cello, "
                          "Acoustic Grand Piano, Choir Aahs, Flute, French Horn, or a program number 0–127",
                          param="instruments") from None
    return programs * VOICES if len(programs) == 1 else programs


@node("sound.music", layer="sound", version=1, model="music", outputs={"audio": Audio, "midi": Midi})
def music(
    *,
    key: Annotated[str, Field(max_length=3, description="tonic: C, C#, Db, D, ..., B")] = "C",
    mode: Annotated[Literal["major", "minor"], Field(description="major or minor")] = "major",
    tempo_bpm: Annotated[float, Field(ge=30, le=240, description="quarter notes per minute (adjusted slightly to fit duration_s)")] = 90.0,
    duration_s: Annotated[float | None, Field(gt=0, le=600, description="exact length of the audio, s; empty = use bars")] = None,
    bars: Annotated[int | None, Field(gt=0, le=256, description="length in 4/4 bars (when duration_s is empty; default 8)")] = None,
    instruments: Annotated[list[str | int], Field(min_length=1, max_length=4, description="General MIDI instrument per voice (soprano, alto, tenor, bass), names or programs 0–127")] = DEFAULT_INSTRUMENTS,  # noqa: B006 (pydantic copies defaults)
    seed: Annotated[int, Field(ge=0, le=2**63 - 1, description="sampling seed: same seed, same music")] = 0,
    temperature: Annotated[float, Field(gt=0, le=2, description="sampling temperature (lower = plainer, more in key)")] = 0.9,
    top_p: Annotated[float, Field(gt=0, le=1, description="nucleus sampling: draw only from the likeliest tokens holding this share of probability")] = 0.95,
    cadence: Annotated[bool, Field(description="end on an authentic cadence (bass 5→1, final tonic triad)")] = True,
    soundfont: Annotated[InputFile | None, Field(description=".sf2/.sf3 General MIDI SoundFont; empty = TimGM6mb")] = None,
    sample_rate_hz: Annotated[Literal[44100, 48000], Field(description="output rate, Hz")] = 48000,
    model: Annotated[str | None, Field(description="registered music model id (default: strata-chorales)")] = None,
    loaded_model: Any = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Compose four-part music with the built-in chorale model and play it with General MIDI instruments.

    Steps: check the controls → choose bars and the exact tempo → sample tokens under the
    grammar and cadence plan (:mod:`strata.models.music_generate`) → notes → MIDI → audio
    through the SoundFont → cut/pad to the exact length with a 50 ms fade at the very end.

    Args:
        key: tonic name (default "C"): C, C#/Db, D, D#/Eb, E, F, F#/Gb, G, G#/Ab, A, A#/Bb, B.
        mode: "major" (default) or "minor".
        tempo_bpm: [30, 240] (default 90). With ``duration_s`` the bar count is chosen at this
            tempo and the tempo then adjusted so the bars fill the time exactly.
        duration_s: (0, 600] s. The audio has exactly ``round(duration_s · sample_rate_hz)``
            samples: whole bars plus a release of min(1 s, duration_s / 8) for the last chord.
        bars: (0, 256] (default 8 when ``duration_s`` is empty); audio = bars at ``tempo_bpm``
            plus a 1 s release. Give ``duration_s`` or ``bars``, not both.
        instruments: 1 or 4 General MIDI names or program numbers (default a string quartet:
            Violin, Violin, Viola, Cello).
        seed: ≥ 0 (default 0): same seed and settings → the same bytes.
        temperature: (0, 2] (default 0.9).
        top_p: (0, 1] (default 0.95): nucleus sampling; 1 = from every allowed token.
        cadence: end on the planned cadence (default True).
        soundfont: a .sf2/.sf3 file (default pretty_midi's TimGM6mb).
        sample_rate_hz: 44100 or 48000 (default 48000).
        model: a registered "music" model id (default: the built-in one).
        loaded_model: injected by the engine.
        progress: injected by the engine (bars done / total).
    """
    from strata.media.midi import render_midi as _render
    from strata.models.music_generate import fit_bars, generate_tokens, parse_key
    from strata.models.music_tokens import decode, to_midi

    tonic, mode_token = parse_key(key, mode)
    programs = instrument_programs(list(instruments))
    if duration_s is not None and bars is not None:
        raise OpError("give duration_s or bars, not both", param="bars")
    if duration_s is not None and not 0 < duration_s <= 600:
        raise OpError(f"duration_s must be in (0, 600] s, got {duration_s}", param="duration_s")
    if bars is not None and not 0 < bars <= 256:
        raise OpError(f"bars must be in 1–256, got {bars}", param="bars")
    if not 30 <= tempo_bpm <= 240:
        raise OpError(f"tempo_bpm must be in [30, 240], got {tempo_bpm}", param="tempo_bpm")
    if not 0 < temperature <= 2:
        raise OpError(f"temperature must be in (0, 2], got {temperature}", param="temperature")
    if not 0 < top_p <= 1:
        raise OpError(f"top_p must be in (0, 1], got {top_p}", param="top_p")
    if duration_s is not None:
        n_bars, tempo, release_s = fit_bars(duration_s, tempo_bpm)
        if not 20 <= tempo <= 400:
            raise OpError(f"{duration_s} s cannot hold whole bars near {tempo_bpm} bpm (it would need {tempo:.0f} bpm); "
                          "give at least 1.5 s or use bars", param="duration_s")
    else:
        n_bars, tempo, release_s = bars or 8, tempo_bpm, 1.0
        duration_s = n_bars * 240 / tempo + release_s
    net = loaded_model if loaded_model is not None else _load_music_model(model)
    tokens = generate_tokens(net, tonic=tonic, mode=mode_token, n_bars=n_bars, seed=seed, temperature=temperature,
                             top_p=top_p, cadence=cadence, progress=progress)
    notes, _key = decode(tokens)
    midi = to_midi(notes, tempo_bpm=tempo, programs=programs)
    audio = _render(midi, soundfont=soundfont, sample_rate_hz=sample_rate_hz, tail_s=release_s)
    return {"audio": _exact_length(audio, round(duration_s * sample_rate_hz)), "midi": midi}


def _exact_length(audio: Audio, n: int) -> Audio:
    """``audio`` cut or padded to ``n`` samples, the last 50 ms faded out (a cut release never clicks)."""
    samples = np.zeros((audio.samples.shape[0], n), np.float32)
    take = min(n, audio.samples.shape[1])  # the MIDI file's tick grid can move the end by a sample or two
    samples[:, :take] = audio.samples[:, :take]
    fade = min(n, round(MUSIC_FADE_S * audio.sample_rate_hz))
    samples[:, n - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return Audio(samples, audio.sample_rate_hz)


@node("sound.fit_music", layer="sound", version=1)
def fit_music(
    midi: Midi,
    fit_to: Audio | None = None,
    *,
    duration_s: Annotated[float | None, Field(gt=0, le=600, description="exact length, s; empty = fit_to's length")] = None,
    max_stretch: Annotated[float, Field(ge=1, le=4, description="the most the tempo may change, as a factor either way")] = 1.5,
    soundfont: Annotated[InputFile | None, Field(description=".sf2/.sf3 General MIDI SoundFont; empty = TimGM6mb")] = None,
    sample_rate_hz: Annotated[Literal[44100, 48000], Field(description="output rate, Hz")] = 48000,
) -> Audio:
    """Play a score so that it lasts exactly as long as another track, ending on its last chord.

    The score's tempo is scaled so its last note ends ``min(1 s, length / 8)`` before the end
    (the release of the last chord, as ``sound.music`` leaves it); the audio has exactly the
    reference's length. Composing (``sound.music``, seconds of model sampling) stays cached
    when only the length changes, e.g. a film whose scenes last as long as their narration:
    a reworded line re-plays the score here (a fraction of a second) instead of composing anew.

    Args:
        midi: the score (``sound.music``'s midi, or ``sound.load_midi``).
        fit_to: the track whose length to fill (``video.timeline``'s narration is as long as
            the film). Give this or ``duration_s``.
        duration_s: (0, 600] s: the length, when there is no ``fit_to``.
        max_stretch: [1, 4] (default 1.5): refuse to play the score more than this many times
            slower or faster than written (compose more or fewer bars instead).
        soundfont: a .sf2/.sf3 file (default pretty_midi's TimGM6mb).
        sample_rate_hz: 44100 or 48000 (default 48000).
    """
    from strata.media.midi import render_midi as _render

    if (fit_to is None) == (duration_s is None):
        raise OpError("give fit_to (a track to match) or duration_s, not both and not neither", param="duration_s")
    length_s = fit_to.duration_s if fit_to is not None else float(duration_s)  # type: ignore[arg-type]
    pm = midi.parse()
    score_s = pm.get_end_time()
    if score_s <= 0:
        raise OpError("the score has no notes to fit", param="midi")
    release_s = min(1.0, length_s / 8)
    stretch = (length_s - release_s) / score_s
    if not 1 / max_stretch <= stretch <= max_stretch:
        _, tempi = pm.get_tempo_changes()
        tempo = float(tempi[0]) if len(tempi) else 120.0
        bars = max(1, round((length_s - release_s) * tempo / 240))
        raise OpError(f"the score lasts {score_s:.1f} s; filling {length_s:.1f} s would play it {stretch:.2f}× as "
                      f"long, beyond max_stretch {max_stretch}; compose about {bars} bars at {tempo:.0f} bpm "
                      "(sound.music bars) or raise max_stretch", param="max_stretch")
    audio = _render(midi, soundfont=soundfont, sample_rate_hz=sample_rate_hz, tail_s=release_s, stretch=stretch)
    return _exact_length(audio, round(length_s * sample_rate_hz))


def _load_music_model(model: str | None) -> Any:
    """The music model from the default registry (for calls from Python, outside the engine)."""
    from strata.errors import ModelError
    from strata.models.registry import default_registry

    registry = default_registry()
    if model is None and not any("music" in e.capabilities for e in registry.entries.values()):
        raise ModelError("no music model is installed (weights/music/ is empty); train and export it with "
                         "`strata train music` then `strata train music --export`, or set STRATA_MUSIC_MODEL "
                         "to a folder holding model.safetensors and config.json")
    return registry.load("music", {"model": model})


# ---------------------------------------------------------------- mixing


class TrackSettings(BaseModel):
    """Placement and level of one track of :func:`mix`."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["voice", "music", "effect"] = Field(
        "music", description="voice tracks drive the ducking; music tracks are ducked under them")
    gain_db: float = Field(0.0, ge=-60, le=24, description="level change, dB")
    offset_s: float = Field(0.0, ge=0, le=36_000, description="when the track starts in the mix, s")
    fade_in_s: float = Field(0.0, ge=0, le=600, description="linear fade-in length, s")
    fade_out_s: float = Field(0.0, ge=0, le=600, description="linear fade-out length, s")
    loop: bool = Field(False, description="repeat the track until the end of the mix")


def _fade(x: np.ndarray, rate: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    n = x.shape[1]
    env = np.ones(n, np.float32)
    fi, fo = min(n, round(fade_in_s * rate)), min(n, round(fade_out_s * rate))
    if fi:
        env[:fi] = np.linspace(0, 1, fi, endpoint=False, dtype=np.float32)
    if fo:
        env[n - fo :] *= np.linspace(1, 0, fo, dtype=np.float32)
    return x * env


def duck_gain(key: np.ndarray, rate: int, *, depth_db: float, threshold_db: float, attack_ms: float,
              release_ms: float, hop_ms: float = 5.0) -> np.ndarray:
    """Per-sample gain (linear) that lowers music by ``depth_db`` while the ``key`` (voice) is active.

    The key's RMS is measured every ``hop_ms``; where it is above ``threshold_db`` (dBFS) the
    target gain is ``depth_db``, else 0 dB. The gain moves toward the target with one-pole
    time constants ``attack_ms`` (going down) and ``release_ms`` (coming back), and looks
    ahead by ``attack_ms`` so the music is already down when the first word starts.
    (pedalboard's Compressor has no sidechain input, hence this small follower.)
    """
    hop = max(1, round(rate * hop_ms / 1000))
    n_hops = -(-len(key) // hop)
    padded = np.zeros(n_hops * hop, np.float32)
    padded[: len(key)] = key
    rms = np.sqrt(np.mean(padded.reshape(n_hops, hop) ** 2, axis=1) + 1e-20)
    active = 20 * np.log10(rms) > threshold_db
    lookahead = round(attack_ms / hop_ms)
    if lookahead:  # a voice onset at hop k starts the duck at hop k − lookahead
        shifted = np.zeros_like(active)
        shifted[: n_hops - lookahead] = active[lookahead:]
        active = active | shifted
    target = np.where(active, depth_db, 0.0)
    a_att = np.exp(-hop_ms / max(attack_ms, 1e-3))
    a_rel = np.exp(-hop_ms / max(release_ms, 1e-3))
    g = np.empty(n_hops)
    cur = 0.0
    for k in range(n_hops):  # asymmetric one-pole smoothing needs the previous value: a loop over hops
        a = a_att if target[k] < cur else a_rel
        cur = a * cur + (1 - a) * target[k]
        g[k] = cur
    centers = (np.arange(n_hops) + 0.5) * hop
    gain_db = np.interp(np.arange(len(key)), centers, g)
    return (10 ** (gain_db / 20)).astype(np.float32)


def measure_true_peak(samples: np.ndarray, rate: int) -> float:
    """True peak in dBTP: the peak of the signal 4× oversampled (ITU-R BS.1770-4 Annex 2).

    ``samples``: (channels, n) or (n,).
    """
    del rate  # the oversampling factor is what matters (4× covers rates up to 48 kHz)
    x = np.atleast_2d(samples)
    return _dbtp(sample_peaks(x).max()) if x.size else _dbtp(0.0)


def _dbtp(peak: float) -> float:
    return 20 * float(np.log10(max(float(peak), 1e-12)))


def integrated_lufs(samples: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4 K-weighting and gating) of channels-first
    ``samples``; ``-inf`` for silence or less than one 400 ms block.

    Measured by FFmpeg's ``ebur128`` filter (through PyAV, already strata's media library):
    compiled, and it spares every process that mixes importing ``scipy.signal`` (~1 s), which
    pyloudnorm needs. The tests check the results against pyloudnorm, an independent
    implementation (they agree within 0.05 LU at 44.1 and 48 kHz, the rates sound.mix works at).
    """
    import av
    import av.filter

    x = np.atleast_2d(np.asarray(samples, np.float32))
    layout = {1: "mono", 2: "stereo"}.get(x.shape[0])
    if layout is None:
        raise OpError(f"loudness is measured on mono or stereo sound, not {x.shape[0]} channels")
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="fltp", sample_rate=rate, layout=layout, time_base=Fraction(1, rate))
    meter = graph.add("ebur128", "metadata=1")  # each output frame carries the running values
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    reading = None

    def drain() -> None:
        nonlocal reading
        while True:
            try:
                frame = graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            reading = frame.metadata.get("lavfi.r128.I", reading)

    chunk = 1 << 16
    for start in range(0, x.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, start : start + chunk]), format="fltp",
                                           layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    # FFmpeg reports −70 LUFS (the absolute gate) when no block passes it: silence
    value = float(reading) if reading is not None else -np.inf
    return value if value > -70.0 else -np.inf


def limit_true_peak(samples: np.ndarray, ceiling_dbtp: float, *, lookahead_ms: float = 3.0,
                    release_ms: float = 60.0, rate: int, peaks: np.ndarray | None = None) -> np.ndarray:
    """Lower the gain wherever the 4× oversampled peak would exceed ``ceiling_dbtp``.

    Needed gain per sample = ceiling / oversampled peak (≤ 1). A minimum filter spreads each
    reduction ``lookahead_ms`` before and ``release_ms`` after the peak; a moving average of
    ``lookahead_ms`` then smooths it without ever exceeding the needed gain (every value in
    the average's window is a minimum over a window containing the peak). Linked across
    channels so the stereo image does not move. ``peaks``: :func:`sample_peaks` of
    ``samples`` when the caller has them already (it is most of the work).
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    peak = sample_peaks(samples) if peaks is None else peaks
    need = np.minimum(1.0, 10 ** (ceiling_dbtp / 20) / np.maximum(peak, 1e-12))
    la, rel = max(1, round(rate * lookahead_ms / 1000)), max(1, round(rate * release_ms / 1000))
    # window [i − rel, i + 2·la]: origin shifts the window toward the future (lookahead)
    size = rel + 2 * la + 1
    held = minimum_filter1d(need, size=size, origin=(size // 2) - rel, mode="nearest")
    smooth = uniform_filter1d(held, size=2 * la + 1, mode="nearest")
    return (samples * np.minimum(smooth, need)).astype(np.float32)


def sample_peaks(samples: np.ndarray) -> np.ndarray:
    """Per sample, the largest magnitude of any channel at it or in the 4× oversampled signal
    just after it (BS.1770-4 Annex 2's true-peak reading, kept in time for the limiter)."""
    n = samples.shape[1]
    over = np.abs(resample_rows(samples, 1, 4)).max(axis=0)[: 4 * n]
    return np.maximum(over.reshape(n, 4).max(axis=1), np.abs(samples).max(axis=0))


def normalize_loudness(samples: np.ndarray, rate: int, *, target_lufs: float, ceiling_dbtp: float,
                       tolerance_lu: float = 0.1, max_passes: int = 8) -> np.ndarray:
    """Gain to ``target_lufs`` and limit to ``ceiling_dbtp``, repeated until both hold.

    Limiting lowers the loudness a little, so gain and limit alternate; each pass ends with the
    limiter, so the true peak is always under the ceiling.
    """
    out = samples.astype(np.float32)
    # Aim this far under the ceiling: the 4× estimate can miss a sliver of the true peak, and
    # AAC encoding (video.render) overshoots peaks by ~0.1–0.2 dB; the MP4's decoded sound must
    # still meet the ceiling.
    margin = CODEC_HEADROOM_DB
    for _ in range(max_passes):
        loud = integrated_lufs(out, rate)
        if not np.isfinite(loud):
            raise OpError("the mix is silent (or shorter than the 400 ms loudness window); "
                          "nothing to normalize", param="target_lufs")
        peaks = sample_peaks(out)  # oversampling is linear: scaled with the gain, not redone
        if abs(loud - target_lufs) <= tolerance_lu and _dbtp(peaks.max()) <= ceiling_dbtp:
            return out
        gain = np.float32(10 ** ((target_lufs - loud) / 20))
        out, peaks = out * gain, peaks * gain
        if _dbtp(peaks.max()) > ceiling_dbtp - margin:
            out = limit_true_peak(out, ceiling_dbtp - margin, rate=rate, peaks=peaks)
    loud = integrated_lufs(out, rate)
    if abs(loud - target_lufs) > 0.5:
        raise OpError(f"cannot reach {target_lufs} LUFS under a {ceiling_dbtp} dBTP ceiling without heavy "
                      f"limiting (got {loud:.1f} LUFS); lower target_lufs or raise true_peak_dbtp",
                      param="target_lufs")
    return out


@node("sound.mix", layer="sound", version=1)
def mix(
    tracks: list[Audio],
    *,
    settings: Annotated[list[TrackSettings], Field(max_length=64, description="one entry per track (default: voice first, then music)")] = [],  # noqa: B006 (pydantic copies defaults)
    duck_db: Annotated[float, Field(ge=-40, le=0, description="music level under the voice, dB (0 = no ducking)")] = -12.0,
    duck_threshold_db: Annotated[float, Field(ge=-80, le=0, description="voice level that triggers ducking, dBFS")] = -40.0,
    duck_attack_ms: Annotated[float, Field(ge=1, le=2000, description="how fast the music goes down, ms")] = 80.0,
    duck_release_ms: Annotated[float, Field(ge=10, le=5000, description="how fast the music comes back, ms")] = 500.0,
    target_lufs: Annotated[float | None, Field(ge=-40, le=-5, description="integrated loudness, LUFS; empty = no normalization")] = -14.0,
    true_peak_dbtp: Annotated[float, Field(ge=-12, le=0, description="true-peak ceiling, dBTP")] = -1.0,
    duration_s: Annotated[float | None, Field(gt=0, le=36_000, description="mix length, s; empty = until the last track ends")] = None,
    sample_rate_hz: Annotated[Literal[44100, 48000], Field(description="output rate, Hz")] = 48000,
    channels: Annotated[Literal[1, 2], Field(description="1 = mono, 2 = stereo")] = 2,
) -> Audio:
    """Mix tracks into one: place, fade, duck music under voice, normalize loudness, limit peaks.

    Args:
        tracks: the tracks, in the order of ``settings``; resampled to ``sample_rate_hz``.
        settings: per track: role (voice/music/effect), gain_db, offset_s, fade_in_s,
            fade_out_s, loop. Default: the first track is voice, the others music.
        duck_db: [−40, 0] dB (default −12): music gain while the voice speaks.
        duck_threshold_db: [−80, 0] dBFS (default −40): voice RMS (5 ms windows) that counts as speech.
        duck_attack_ms / duck_release_ms: time constants of the ducking (default 80 / 500 ms).
        target_lufs: [−40, −5] (default −14, the common streaming level); None skips it.
        true_peak_dbtp: [−12, 0] (default −1): ceiling for the 4× oversampled peak.
        duration_s: length of the mix (default: until the last track ends); tracks are cut there.
        sample_rate_hz: 44100 or 48000 (default 48000, video's rate).
        channels: 1 or 2 (default 2).
    """
    if not tracks:
        raise OpError("connect at least one track", param="tracks")
    if settings and len(settings) != len(tracks):
        raise OpError(f"settings has {len(settings)} entries for {len(tracks)} tracks; give one per track",
                      param="settings")
    sets = [TrackSettings.model_validate(s) for s in settings] or [TrackSettings(role="voice" if i == 0 else "music") for i in range(len(tracks))]
    rate = sample_rate_hz
    placed: list[tuple[TrackSettings, np.ndarray, int]] = []
    for track, s in zip(tracks, sets):
        x = with_channels(resample(track, rate), channels).samples
        placed.append((s, _fade(x, rate, s.fade_in_s, s.fade_out_s) * np.float32(10 ** (s.gain_db / 20)),
                       round(s.offset_s * rate)))
    n = round(duration_s * rate) if duration_s else max(off + x.shape[1] for s, x, off in placed)

    def lay(x: np.ndarray, off: int, loop: bool) -> np.ndarray:
        buf = np.zeros((channels, n), np.float32)
        pos = off
        while pos < n:
            take = min(x.shape[1], n - pos)
            buf[:, pos : pos + take] = x[:, :take]
            pos += x.shape[1]
            if not loop or x.shape[1] == 0:
                break
        return buf

    voice = np.zeros((channels, n), np.float32)
    music = np.zeros((channels, n), np.float32)
    other = np.zeros((channels, n), np.float32)
    for s, x, off in placed:
        target = {"voice": voice, "music": music, "effect": other}[s.role]
        target += lay(x, off, s.loop)
    if duck_db < 0 and music.any() and voice.any():
        music *= duck_gain(voice.mean(axis=0), rate, depth_db=duck_db, threshold_db=duck_threshold_db,
                           attack_ms=duck_attack_ms, release_ms=duck_release_ms)
    out = voice + music + other
    if target_lufs is not None:
        out = normalize_loudness(out, rate, target_lufs=target_lufs, ceiling_dbtp=true_peak_dbtp)
    elif measure_true_peak(out, rate) > true_peak_dbtp:
        out = limit_true_peak(out, true_peak_dbtp - CODEC_HEADROOM_DB, rate=rate)
    return Audio(out, rate)


__all__ = ["duck_gain", "fit_music", "instrument_programs", "integrated_lufs", "limit_true_peak", "load_audio", "mix", "music",
           "normalize_loudness", "speech", "subtitles", "measure_true_peak"]
