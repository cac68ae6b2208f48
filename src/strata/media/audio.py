"""Audio: the value type that sound ops take and return, and its WAV file I/O.

Samples are float32 (channels, n) at ``sample_rate_hz``, nominally in [−1, 1] (a mix may go
above 1 before it is normalized; files clip). Like Image, values are immutable: the array is
read-only and ops return new values.

Store codec (kind ``audio``): a little-endian uint32 sample rate followed by the ``.npy``
bytes of the float32 samples — lossless and deterministic.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from strata.errors import MediaError
from strata.media.codec import npy_array, npy_bytes, register_codec

MAX_CHANNELS = 8
MAX_RATE_HZ = 384_000


@dataclass(frozen=True, eq=False)
class Audio:
    """Sampled sound: ``samples`` float32 (channels, n) at ``sample_rate_hz``."""

    samples: np.ndarray
    sample_rate_hz: int

    def __post_init__(self) -> None:
        s = self.samples
        if not isinstance(s, np.ndarray) or s.ndim != 2 or not 1 <= s.shape[0] <= MAX_CHANNELS:
            raise MediaError(f"Audio needs a (channels, n) array with 1–{MAX_CHANNELS} channels, "
                             f"got shape {getattr(s, 'shape', None)}; use Audio.mono() for 1-D data")
        if not 1000 <= int(self.sample_rate_hz) <= MAX_RATE_HZ:
            raise MediaError(f"sample rate {self.sample_rate_hz} Hz is outside 1000–{MAX_RATE_HZ} Hz")
        a = np.ascontiguousarray(s, dtype=np.float32)
        if not np.all(np.isfinite(a)):
            raise MediaError("audio samples contain NaN or infinity")
        a.setflags(write=False)
        object.__setattr__(self, "samples", a)
        object.__setattr__(self, "sample_rate_hz", int(self.sample_rate_hz))

    @classmethod
    def mono(cls, samples: np.ndarray, sample_rate_hz: int) -> "Audio":
        """One channel from 1-D samples."""
        return cls(np.asarray(samples, np.float32).reshape(1, -1), sample_rate_hz)

    @classmethod
    def silence(cls, duration_s: float, sample_rate_hz: int, channels: int = 1) -> "Audio":
        return cls(np.zeros((channels, round(duration_s * sample_rate_hz)), np.float32), sample_rate_hz)

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate_hz

    def __repr__(self) -> str:
        return f"Audio({self.channels} ch, {self.duration_s:.3f} s @ {self.sample_rate_hz} Hz)"


def resample(audio: Audio, sample_rate_hz: int) -> Audio:
    """``audio`` at another rate (libsoxr, very high quality: linear phase, delay-compensated,
    so sample times are kept — word timings stay valid)."""
    if sample_rate_hz == audio.sample_rate_hz:
        return audio
    return Audio(resample_rows(audio.samples, audio.sample_rate_hz, sample_rate_hz), sample_rate_hz)


def resample_rows(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Channels-first ``samples`` (C, N) from ``rate_in`` to ``rate_out`` Hz as float32 (C, M).

    soxr rather than scipy's polyphase filter: same quality class, ~3× faster here, and it
    imports in milliseconds where ``scipy.signal`` takes ~1 s — paid by every process that
    mixes or renders sound.
    """
    import soxr

    out = soxr.resample(np.ascontiguousarray(samples.T, dtype=np.float32), rate_in, rate_out, quality="VHQ")
    return np.ascontiguousarray(out.T)


def with_channels(audio: Audio, channels: int) -> Audio:
    """Up-mix mono to ``channels`` by copying, or down-mix to mono by averaging."""
    if audio.channels == channels:
        return audio
    if audio.channels == 1:
        return Audio(np.repeat(audio.samples, channels, axis=0), audio.sample_rate_hz)
    if channels == 1:
        return Audio(audio.samples.mean(axis=0, keepdims=True), audio.sample_rate_hz)
    raise MediaError(f"cannot map {audio.channels} channels to {channels}; only mono ↔ N is supported")


# ---------------------------------------------------------------- WAV files (soundfile/libsndfile)

WAV_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}


def encode_wav(audio: Audio, *, bits: int = 16, comment: str | None = None, software: str | None = None) -> bytes:
    """WAV bytes of ``audio`` (16/24-bit PCM or 32-bit float); text goes in the RIFF INFO chunk.

    Values beyond [−1, 1] are clipped by libsndfile for PCM (normalize first to avoid it).
    """
    import soundfile as sf

    if bits not in WAV_SUBTYPES:
        raise MediaError(f"WAV bit depth must be one of {sorted(WAV_SUBTYPES)}, got {bits}")
    buf = io.BytesIO()
    buf.name = "audio.wav"  # soundfile picks the container from the name
    with sf.SoundFile(buf, "w", samplerate=audio.sample_rate_hz, channels=audio.channels, format="WAV",
                      subtype=WAV_SUBTYPES[bits]) as f:
        if comment:
            f.comment = comment
        if software:
            f.software = software
        f.write(audio.samples.T)
    return buf.getvalue()


def add_riff_chunk(wav: bytes, chunk_id: bytes, payload: bytes) -> bytes:
    """``wav`` with a chunk appended (padded to even length) and the RIFF size updated."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE" or len(chunk_id) != 4:
        raise MediaError("not a RIFF/WAVE file, or the chunk id is not 4 bytes")
    chunk = chunk_id + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")
    body = wav[8:] + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def read_riff_chunk(path: str | os.PathLike[str], chunk_id: bytes) -> bytes | None:
    """The payload of the first ``chunk_id`` chunk of a RIFF/WAVE file, or None."""
    data = Path(path).read_bytes()
    pos = 12
    while pos + 8 <= len(data):
        cid, (size,) = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)
        if cid == chunk_id:
            return data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size % 2)
    return None


def load_audio(path: str | os.PathLike[str]) -> Audio:
    """Read a WAV/FLAC/OGG file (anything libsndfile reads) as float32."""
    import soundfile as sf

    try:
        data, rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise MediaError(f"cannot read audio file {os.fspath(path)!r}: {e}") from e
    if data.shape[0] == 0:
        raise MediaError(f"audio file {os.fspath(path)!r} has no samples")
    return Audio(data.T, rate)


def read_wav_info(path: str | os.PathLike[str]) -> dict[str, str]:
    """The RIFF INFO text of a WAV file (``comment``, ``software``, ...)."""
    import soundfile as sf

    with sf.SoundFile(os.fspath(path)) as f:
        return {k: v for k, v in f.copy_metadata().items() if v}


# ---------------------------------------------------------------- store codec

_F32 = np.dtype("<f4")


def _encode(audio: Audio) -> bytes:
    return struct.pack("<I", audio.sample_rate_hz) + npy_bytes(audio.samples.astype(_F32, copy=False))


def _decode(data: bytes) -> Audio:
    if len(data) < 4:
        raise MediaError("stored audio is truncated")
    (rate,) = struct.unpack_from("<I", data)
    return Audio(npy_array(data[4:], dtype=_F32, ndim=2, what="audio"), rate)


register_codec("audio", Audio, _encode, _decode)

__all__ = ["Audio", "add_riff_chunk", "encode_wav", "read_riff_chunk", "load_audio", "read_wav_info", "resample", "with_channels"]
