"""sound.speech: the piper voice and espeak-ng, word timings, subtitles and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from strata.errors import ModelError, OpError
from strata.media.timed_text import parse_srt_or_vtt
from strata.models.registry import default_registry
from strata.models.speech import ESPEAK_ID, PIPER_VOICE_ID
from strata.ops.sound import speech, subtitles


@pytest.fixture(scope="module")
def piper():
    return default_registry().load("speech", {"model": PIPER_VOICE_ID})


@pytest.fixture(scope="module")
def espeak():
    return default_registry().load("speech", {"model": ESPEAK_ID})


@pytest.fixture(scope="module")
def story(piper):
    return speech(text="Hello little fox. It is 1990, and the night is long.", sentence_pause_s=1.0,
                  loaded_model=piper)


def test_voices_are_registered_with_hashes():
    reg = default_registry()
    for model_id in (PIPER_VOICE_ID, ESPEAK_ID):
        entry = reg.find("speech", model_id)
        assert len(entry.weights_hash()) == 64
    assert reg.find("speech").id == PIPER_VOICE_ID  # the neural voice is the default


def test_piper_words_follow_the_text_and_the_sound(story):
    audio, words = story["audio"], story["words"]
    assert [w.text for w in words.items] == ["Hello", "little", "fox.", "It", "is", "1990,", "and", "the", "night",
                                             "is", "long."]
    starts = [w.start_s for w in words.items]
    assert starts == sorted(starts) and words.end_s <= audio.duration_s
    x, rate = audio.samples[0], audio.sample_rate_hz

    def rms(a: float, b: float) -> float:
        seg = x[int(a * rate) : int(b * rate)]
        return float(np.sqrt(np.mean(seg**2))) if len(seg) else 0.0

    # the 1 s sentence pause lies between "fox." and "It", and it is silent
    fox, it = words.items[2], words.items[3]
    assert it.start_s - fox.end_s >= 1.0
    assert rms(fox.end_s + 0.1, it.start_s - 0.1) < 1e-3
    for w in words.items:  # every word span carries voice
        assert rms(w.start_s, w.end_s) > 0.01, w


def test_subtitles_match_word_timings_within_100_ms(story):
    words = story["words"]
    subs = subtitles(words, max_chars=20)
    assert len(subs.cues) >= 3
    # every word lies in exactly one cue, whose edges are its first/last word's times
    joined = " ".join(c.text for c in subs.cues).split()
    assert joined == [w.text for w in words.items]
    k = 0
    for cue in subs.cues:
        n = len(cue.text.split())
        first, last = words.items[k], words.items[k + n - 1]
        assert abs(cue.start_s - first.start_s) <= 0.1 and abs(cue.end_s - last.end_s) <= 0.1
        k += n
    for text in (subs.to_srt(), subs.to_vtt()):  # the files carry the same times (ms precision)
        parsed = parse_srt_or_vtt(text)
        assert [c.text for c in parsed.cues] == [c.text for c in subs.cues]
        assert all(abs(a.start_s - b.start_s) <= 0.001 and abs(a.end_s - b.end_s) <= 0.001
                   for a, b in zip(parsed.cues, subs.cues))
    assert subs.to_srt().startswith("1\n00:00:00,") and subs.to_vtt().startswith("WEBVTT\n\n00:00:00.")


def test_rate_volume_and_reproducibility(piper):
    a = speech(text="The quick brown fox jumps over the lazy dog.", loaded_model=piper)["audio"]
    b = speech(text="The quick brown fox jumps over the lazy dog.", loaded_model=piper)["audio"]
    assert np.array_equal(a.samples, b.samples)  # variation 0: same text, same samples
    half = speech(text="The quick brown fox jumps over the lazy dog.", volume=0.5, loaded_model=piper)["audio"]
    np.testing.assert_allclose(half.samples, a.samples * 0.5, atol=1e-6)
    fast = speech(text="The quick brown fox jumps over the lazy dog.", rate=1.5, loaded_model=piper)["audio"]
    assert 0.5 < fast.duration_s / a.duration_s < 0.8  # ~1/1.5


def test_espeak_speaks_other_languages_with_word_times(espeak):
    out = speech(text="Bonjour tout le monde. Comment allez-vous?", language="fr", model=ESPEAK_ID, loaded_model=espeak)
    words = out["words"].items
    assert [w.text for w in words] == ["Bonjour", "tout", "le", "monde.", "Comment", "allez-vous?"]
    assert all(b.start_s >= a.end_s - 1e-3 for a, b in zip(words, words[1:]))
    assert words[-1].end_s <= out["audio"].duration_s + 1e-3
    de = speech(text="Guten Morgen, wie geht es dir?", language="de", loaded_model=espeak)
    assert len(de["words"]) == 6 and de["audio"].duration_s > 0.5


def test_bad_input_is_refused_clearly(piper, espeak):
    with pytest.raises(OpError, match="text is empty") as e:
        speech(text="  ... !  ", loaded_model=piper)
    assert e.value.param == "text"
    with pytest.raises(OpError, match="speaks English only.*espeak-ng"):
        speech(text="Bonjour.", language="fr", loaded_model=piper)
    with pytest.raises(OpError, match="no voice for language 'xx-zz'"):
        speech(text="Hello.", language="xx-zz", loaded_model=espeak)
    with pytest.raises(ModelError, match="unknown model 'robot-voice'"):
        speech(text="Hello.", model="robot-voice")


def test_the_optimized_voice_graph_is_cached_and_gives_the_same_samples(tmp_path, monkeypatch):
    from strata.models.speech import PiperSpeaker, voice_graph_cache_dir

    monkeypatch.setenv("STRATA_CACHE", str(tmp_path))
    entry = default_registry().find("speech", PIPER_VOICE_ID)
    model, config = entry.files

    def say(**kw):
        return PiperSpeaker(model, config, **kw).speak("The fox slept.", rate=1.0).samples

    reference = say()  # no hash: nothing is cached
    assert not voice_graph_cache_dir().exists()
    first = say(weights_hash=entry.weights_hash())  # optimizes and writes the graph
    (cached,) = voice_graph_cache_dir().glob("*.onnx")
    assert entry.weights_hash()[:16] in cached.name and "-ort" in cached.name and "-piper" in cached.name
    assert not list(voice_graph_cache_dir().glob(".*.tmp"))  # written under a temp name, then renamed
    again = say(weights_hash=entry.weights_hash())  # read back with optimizations off
    np.testing.assert_array_equal(first, reference)
    np.testing.assert_array_equal(again, reference)
    cached.write_bytes(b"not a graph")  # a damaged cache file is rebuilt, not an error
    np.testing.assert_array_equal(say(weights_hash=entry.weights_hash()), reference)
    assert cached.stat().st_size > 1_000_000
