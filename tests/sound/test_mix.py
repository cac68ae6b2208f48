"""sound.mix: placement, fades, ducking, loudness to a target and the true-peak ceiling.

Loudness is checked with pyloudnorm (ITU-R BS.1770-4) and the true peak with an FFT
resampler (scipy.signal.resample, 4×) — a different method from the mixer's (libsoxr).
"""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import resample

from strata.errors import OpError
from strata.media.audio import Audio
from strata.ops.sound import TrackSettings, duck_gain, integrated_lufs, mix

RATE = 48000


def lufs(a: Audio) -> float:
    return pyloudnorm.Meter(a.sample_rate_hz).integrated_loudness(a.samples.T.astype(np.float64))


def true_peak(a: Audio) -> float:
    return 20 * np.log10(np.abs(resample(a.samples, a.num_samples * 4, axis=1)).max())


def voice_like(seconds: float, rate: int = 22050, seed: int = 0) -> Audio:
    """Noise bursts shaped like syllables (4 Hz), with pauses: enough like speech for a meter."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.25 * t) > -0.3)
    return Audio.mono(0.3 * env * rng.standard_normal(len(t)), rate)


def music_like(seconds: float) -> Audio:
    t = np.arange(int(seconds * RATE)) / RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    return Audio(np.stack([0.5 * chord, 0.5 * chord]), RATE)


@pytest.mark.parametrize("target", [-14.0, -23.0])
def test_mix_hits_loudness_target_under_true_peak_ceiling(target):
    out = mix([voice_like(8), music_like(8)], target_lufs=target, true_peak_dbtp=-1.0)
    assert out.sample_rate_hz == RATE and out.channels == 2
    assert abs(lufs(out) - target) <= 0.5
    assert true_peak(out) <= -1.0 + 0.05  # 0.05 dB: the two resamplers differ slightly at the edges


def test_peaky_material_is_limited_to_the_ceiling():
    rng = np.random.default_rng(1)
    x = 0.05 * rng.standard_normal(RATE * 6)
    x[:: RATE // 3] = 0.9  # sharp clicks: far above the average level
    out = mix([Audio.mono(x, RATE)], settings=[{"role": "effect"}], target_lufs=-10.0, true_peak_dbtp=-1.0)
    assert abs(lufs(out) - (-10.0)) <= 0.5
    assert true_peak(out) <= -0.95


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_loudness_meter_agrees_with_pyloudnorm(rate, channels):
    # strata measures with FFmpeg's ebur128; pyloudnorm is an independent BS.1770 implementation
    rng = np.random.default_rng(channels)
    t = np.arange(int(rate * 6.3)) / rate
    swell = 0.5 + 0.5 * np.sin(2 * np.pi * 0.4 * t)  # loud and quiet blocks, so the gating matters
    x = (swell * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal((channels, t.size)))).astype(np.float32)
    expected = pyloudnorm.Meter(rate).integrated_loudness(x.T.astype(np.float64))
    assert abs(integrated_lufs(x, rate) - expected) < 0.1
    assert integrated_lufs(x * np.float32(0.1), rate) == pytest.approx(integrated_lufs(x, rate) - 20, abs=0.05)
    assert integrated_lufs(np.zeros_like(x), rate) == -np.inf  # silence
    assert integrated_lufs(x[:, : rate // 4], rate) == -np.inf  # shorter than one 400 ms block


def test_offsets_gain_and_fades_without_normalization():
    one = Audio.mono(np.ones(RATE), RATE)
    out = mix([one], settings=[TrackSettings(role="effect", offset_s=0.5, gain_db=-6.0206, fade_in_s=0.5)],
              target_lufs=None, true_peak_dbtp=0.0, channels=1)
    x = out.samples[0]
    assert len(x) == RATE + RATE // 2
    assert np.all(x[: RATE // 2] == 0)  # nothing before the offset
    assert x[RATE // 2 + RATE // 4] == pytest.approx(0.25, abs=1e-3)  # half-way through the fade: 0.5 × 0.5
    assert x[-1] == pytest.approx(0.5, abs=1e-3)  # −6.02 dB = × 0.5


def test_music_is_ducked_under_the_voice():
    voice = np.zeros(RATE * 6, np.float32)
    voice[2 * RATE : 4 * RATE] = 0.3 * np.sin(2 * np.pi * 200 * np.arange(2 * RATE) / RATE)
    music = music_like(6)
    out = mix([Audio.mono(voice, RATE), music], duck_db=-12.0, duck_release_ms=200,
              target_lufs=None, true_peak_dbtp=0.0, channels=1)
    ducked = out.samples[0] - voice  # the music part of the mix
    plain = music.samples[0]

    def level(x: np.ndarray, a: float, b: float) -> float:
        return 20 * np.log10(np.sqrt(np.mean(x[int(a * RATE) : int(b * RATE)] ** 2)))

    assert level(ducked, 0.5, 1.5) == pytest.approx(level(plain, 0.5, 1.5), abs=0.1)  # before the voice
    assert level(ducked, 2.8, 3.8) - level(plain, 2.8, 3.8) == pytest.approx(-12.0, abs=0.5)  # under it
    assert level(ducked, 5.0, 5.9) == pytest.approx(level(plain, 5.0, 5.9), abs=0.3)  # released (τ = 200 ms)


def test_duck_gain_follows_attack_and_release_time_constants():
    key = np.zeros(RATE * 4, np.float32)
    key[RATE : 2 * RATE] = 0.5
    g = 20 * np.log10(duck_gain(key, RATE, depth_db=-10, threshold_db=-40, attack_ms=100, release_ms=400))
    # one-pole release: 1 − e^(−t/τ) of the way back after t (τ = 400 ms), from ~−10 dB
    t = 0.4
    i = int((2 + t) * RATE)
    assert g[i] == pytest.approx(-10 * np.exp(-t / 0.4), abs=0.6)
    assert g[int(1.5 * RATE)] == pytest.approx(-10, abs=0.1)  # fully down while the key is on
    assert g[int(0.5 * RATE)] == pytest.approx(0, abs=0.01)  # and untouched well before it


def test_bad_mix_input_is_refused_clearly():
    with pytest.raises(OpError, match="settings has 1 entries for 2 tracks"):
        mix([music_like(1), music_like(1)], settings=[{"role": "music"}])
    with pytest.raises(OpError, match="silent"):
        mix([Audio.mono(np.zeros(RATE * 2), RATE)])
