"""An invisible watermark in every image (and video frame) strata writes.

Metadata and content credentials vanish when a file is re-saved or stripped; a watermark in
the pixels survives that, so ``strata verify`` can still say "strata made this".

Method
------
RivaGAN (Zhang et al., "Robust Invisible Video Watermarking with Attention", 2019), the learned
32-bit encoder/decoder pair that the ``invisible-watermark`` package ships as ONNX models. It
was chosen over the package's other methods: ``dwtDct`` loses its bits to JPEG quality 85, and
``dwtDctSvd`` ties bits to a fixed block grid, so a 10% crop (which moves the grid) destroys
it. Measured by ``bench/watermark.py`` on 50 photo crops (288-480 px; detection rate):

=============  ========  ======  ==========  ========  ======  ============  ========
method         unmarked  none    JPEG 85     resize    crop    H.264         PSNR
=============  ========  ======  ==========  ========  ======  ============  ========
rivagan-256    0.00      0.92    0.90        0.90      0.88    0.86          42.8 dB
dwtDctSvd      0.00      1.00    1.00        1.00      0.00    1.00          40.7 dB
=============  ========  ======  ==========  ========  ======  ============  ========

RivaGAN's misses concentrate on near-black or flat white content (crops of the retina photo;
emoji on white: 0.70 unattacked, 0.42 after JPEG) — probably because the mark clips at 0 or
255 there (not yet confirmed).
A second, dwtDctSvd mark would cover the un-cropped cases; that is the next step.

RivaGAN costs ~12 µs per pixel on one core, so strata runs it at a fixed working size
(:data:`WORK_SIZE` = 256×256): the image is resized to 256², the encoder's change (the
*residual*) is resized back to the full image and added. Encoding and decoding then cost
~1-2 s each whatever the image size (1.5 s / 1.9 s median in the bench on a busy machine), and resizing attacks do little, since the decoder looks at a 256²
version anyway. The models are run with onnxruntime directly (the package's own wrapper
imports torch, +3 s per process, for a few array operations reproduced here).

Video
-----
``video.render`` marks up to four frames (at most one a second, at moments that follow from
the duration: :func:`video_mark_times`), each encoded as a keyframe and marked at
:data:`VIDEO_GAIN`; the B-frames that follow inherit the mark. :func:`detect_video` averages
the decoder's scores over those moments. It survives the first encode (CRF 20) and a
re-encode at CRF 23 with B-frames; CRF 28 breaks it. ~1 s per marked frame.

Payload (32 bits)
-----------------
16 bits of magic (:data:`MAGIC`, identifies strata) + the first 16 bits of the asset id (four
hex digits: a hint to find the asset in a store; the full id is in the metadata). A watermark
is *detected* when at most :data:`MAX_MAGIC_ERRORS` of the 16 magic bits are wrong: for an
unmarked image whose decoded bits are random that happens with probability
(1 + 16) / 2¹⁶ ≈ 2.6·10⁻⁴ (the bench measures the real rate on unmarked photos).

Images smaller than :data:`MIN_SIDE` (128) pixels on a side are left unmarked (too few pixels
to carry the bits). Between 128 and 256 pixels the mark survives lossless copies but JPEG
quality 85 costs ~20% of the bits (measured: 128² → 78% bit accuracy after JPEG); the survival
figures in ``bench/results/watermark.json`` are for images of 256 pixels a side and more.
``STRATA_WATERMARK=0`` turns watermarking off.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from strata.errors import MediaError
from strata.media.image import Image

ENV_WATERMARK = "STRATA_WATERMARK"
METHOD = "rivagan-256"
#: working resolution of the encoder/decoder (pixels per side)
WORK_SIZE = 256
#: images smaller than this on either side are not watermarked
MIN_SIDE = 128
N_BITS = 32
#: 16-bit tag that says "strata" (0x5374 = "St")
MAGIC = 0x5374
MAX_MAGIC_ERRORS = 1

_MAGIC_BITS = np.unpackbits(np.array([MAGIC >> 8, MAGIC & 0xFF], np.uint8))


def watermark_enabled() -> bool:
    """False when ``STRATA_WATERMARK`` is 0/false/no/off; watermarking is on by default."""
    return os.environ.get(ENV_WATERMARK, "1").strip().lower() not in ("0", "false", "no", "off")


def payload_bits(asset_id: str | None) -> np.ndarray:
    """The 32 payload bits for an asset: 16 magic bits + the first 16 bits of ``asset_id``
    (a hex digest; None or a non-hex id gives zeros)."""
    try:
        hint = bytes.fromhex((asset_id or "")[:4].ljust(4, "0"))
    except ValueError:
        hint = b"\x00\x00"
    return np.concatenate([_MAGIC_BITS, np.unpackbits(np.frombuffer(hint, np.uint8))]).astype(np.uint8)


def describe(asset_id: str | None) -> dict[str, Any]:
    """What is embedded, for the content credentials' ``org.strata.watermark`` assertion."""
    bits = payload_bits(asset_id)
    return {"method": METHOD, "bits": N_BITS, "magic": f"{MAGIC:04x}",
            "payload": bytes(np.packbits(bits)).hex(), "library": "invisible-watermark (RivaGAN ONNX)"}


@lru_cache(maxsize=1)
def _sessions() -> tuple[Any, Any]:
    spec = importlib.util.find_spec("imwatermark")
    if spec is None or not spec.submodule_search_locations:
        raise MediaError("the invisible watermark needs the invisible-watermark package: "
                         f"pip install --no-deps invisible-watermark PyWavelets (or set {ENV_WATERMARK}=0)")
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise MediaError(f"the invisible watermark needs onnxruntime: pip install onnxruntime (or set {ENV_WATERMARK}=0)") from e
    from strata.parallel import cores

    folder = Path(list(spec.submodule_search_locations)[0])
    options = ort.SessionOptions()
    # One core is enough for 256² and leaves the others to the rest of the run.
    options.intra_op_num_threads = max(1, min(4, cores() // 2))
    make = lambda name: ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])  # noqa: E731
    return make("rivagan_encoder.onnx"), make("rivagan_decoder.onnx")


def _to_model(rgb255: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 255] → the models' (1, 3, 1, H, W) input in [-1, 1]."""
    return (rgb255 / 127.5 - 1.0).astype(np.float32).transpose(2, 0, 1)[None, :, None]


def _work(rgb255: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb255.astype(np.float32), (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA)


def _check_frame(frame: np.ndarray, what: str) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        raise MediaError(f"{what} must be an (H, W, 3) RGB array, got shape {getattr(frame, 'shape', None)}")
    if min(frame.shape[:2]) < MIN_SIDE:
        raise MediaError(f"{what} is {frame.shape[1]}×{frame.shape[0]}; the watermark needs at least {MIN_SIDE} pixels a side")


def watermark_residual(rgb255: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The change that embeds ``bits`` in an RGB frame, at the frame's size (float32, 0..255 units).

    The residual belongs to *this* frame's content: added to the astronaut photo panned by 8 px,
    only 44% of the bits read back (measured), so a video needs one residual per marked frame
    (~1-2 s each on one core: mark e.g. one frame per second, not every frame).

    Args:
        rgb255: (H, W, 3) frame, uint8 or float in [0, 255]; each side ≥ :data:`MIN_SIDE`.
        bits: 32 payload bits (:func:`payload_bits`).
    """
    _check_frame(rgb255, "the frame")
    if np.asarray(bits).shape != (N_BITS,):
        raise MediaError(f"the payload must be {N_BITS} bits, got shape {np.asarray(bits).shape}")
    encoder, _ = _sessions()
    small = _work(rgb255)
    marked = encoder.run(None, {"frame": _to_model(small), "data": np.asarray(bits, np.float32)[None]})[0]
    residual = (np.clip(marked[0, :, 0].transpose(1, 2, 0), -1, 1) + 1.0) * 127.5 - small
    h, w = rgb255.shape[:2]
    return cv2.resize(residual, (w, h), interpolation=cv2.INTER_LINEAR)


def embed_frame(frame: np.ndarray, bits: np.ndarray, *, gain: float = 1.0) -> np.ndarray:
    """A uint8 RGB video frame with ``bits`` embedded (same shape; the input is not changed).

    ``gain`` scales the mark: video uses :data:`VIDEO_GAIN`, because a lone marked frame among
    unmarked ones loses detail to H.264's prediction from its neighbours.
    """
    residual = watermark_residual(frame, bits)
    return np.clip(np.rint(frame.astype(np.float32) + gain * residual), 0, 255).astype(np.uint8)


def embed_watermark(image: Image, asset_id: str | None) -> Image:
    """``image`` with strata's watermark for ``asset_id`` in its colors (alpha unchanged).

    Images smaller than :data:`MIN_SIDE` on a side are returned as they are.

    Args:
        image: the image to mark.
        asset_id: the asset's content id (hex); its first 16 bits go into the payload.
    """
    if min(image.width, image.height) < MIN_SIDE:
        return image
    rgb = image.rgb * 255.0
    residual = watermark_residual(rgb, payload_bits(asset_id))
    pixels = image.pixels.copy()
    pixels[:, :, :3] = np.clip((rgb + residual) / 255.0, 0.0, 1.0)
    return Image(pixels)


@dataclass(frozen=True)
class WatermarkResult:
    """What the decoder read from an image.

    Attributes:
        found: the magic matched (at most :data:`MAX_MAGIC_ERRORS` wrong bits).
        bits: the 32 decoded bits.
        magic_errors: how many of the 16 magic bits were wrong.
        asset_hint: the four hex digits of the asset id the payload carries (when found).
    """

    found: bool
    bits: tuple[int, ...]
    magic_errors: int
    asset_hint: str | None


# ---- video -----------------------------------------------------------------------------------
# A residual belongs to one frame's content (see watermark_residual), and RivaGAN costs ~1 s a
# frame here, so a video carries the mark in a few frames at fixed moments rather than in all
# of them: at most VIDEO_MARKS, at most one a second, centered in equal parts of the video.
# The moments follow from the duration alone, so `strata verify` knows where to look after a
# re-encode (which keeps timestamps) without any metadata.
VIDEO_MARKS = 4
# Measured on a 2 s pan over a photo (tests/provenance/test_watermark.py): at gain 1 a lone
# marked frame re-encoded at CRF 23 reads 2-3 wrong magic bits; at 2.0 (PSNR 42.6 → 36.7 dB on
# the marked frames only) the soft vote reads 0 after CRF 23; CRF 28 still breaks it (3 wrong).
VIDEO_GAIN = 2.0


def video_mark_times(duration_s: float, marks: int = VIDEO_MARKS) -> list[float]:
    """The moments (s) whose frames carry the watermark in a video of ``duration_s`` seconds."""
    n = max(1, min(marks, int(duration_s)))
    return [(i + 0.5) * duration_s / n for i in range(n)]


def video_mark_frames(n_frames: int, fps: float, marks: int = VIDEO_MARKS) -> set[int]:
    """Indices of the frames to mark in a video of ``n_frames`` frames at ``fps``."""
    return {min(n_frames - 1, int(t * fps)) for t in video_mark_times(n_frames / fps, marks)}


def detect_video(path: str | os.PathLike[str]) -> WatermarkResult | None:
    """Look for the watermark in the frames at :func:`video_mark_times` of a video file.

    The decoder's scores are averaged over those frames (a soft vote); None when the frames
    are too small to carry a mark.

    Raises:
        MediaError: the file cannot be decoded as video.
    """
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            duration = float(container.duration or 0) / av.time_base if container.duration else None
            if duration is None and stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            if not duration:
                return None
            pending = video_mark_times(duration)
            fps = float(stream.average_rate or 25)
            scores: list[np.ndarray] = []
            for frame in container.decode(stream):
                if not pending:
                    break
                t = float(frame.pts * stream.time_base) if frame.pts is not None else None
                # The marked frame is the one whose interval contains the moment.
                if t is not None and t + 1.0 / fps > pending[0]:
                    pending.pop(0)
                    rgb = frame.to_ndarray(format="rgb24")
                    if min(rgb.shape[:2]) < MIN_SIDE:
                        return None
                    scores.append(decode_scores(rgb))
    except (av.FFmpegError, ValueError, IndexError) as e:
        raise MediaError(f"cannot decode the video: {e}") from e
    if not scores:
        return None
    # Every marked frame carries the same payload: averaging the decoder's scores before
    # deciding each bit is a soft vote, stronger than any single damaged frame.
    return _result((np.mean(scores, axis=0) > 0.5).astype(np.uint8))


def decode_scores(frame: np.ndarray) -> np.ndarray:
    """The decoder's 32 scores in [0, 1] (> 0.5 reads as a 1 bit) for an (H, W, 3) RGB frame."""
    _check_frame(frame, "the image")
    _, decoder = _sessions()
    return decoder.run(None, {"frame": _to_model(_work(frame))})[0][0]


def decode_bits(frame: np.ndarray) -> np.ndarray:
    """The 32 bits (uint8) the decoder reads from an (H, W, 3) RGB frame."""
    return (decode_scores(frame) > 0.5).astype(np.uint8)


def detect_frame(frame: np.ndarray) -> WatermarkResult:
    """Look for strata's watermark in an (H, W, 3) RGB frame (uint8 or float in [0, 255])."""
    return _result(decode_bits(frame))


def _result(bits: np.ndarray) -> WatermarkResult:
    errors = int(np.sum(bits[:16] != _MAGIC_BITS))
    found = errors <= MAX_MAGIC_ERRORS
    hint = bytes(np.packbits(bits[16:])).hex() if found else None
    return WatermarkResult(found, tuple(int(b) for b in bits), errors, hint)


def detect_watermark(image: Image | np.ndarray) -> WatermarkResult | None:
    """Look for strata's watermark in an image; None when it is too small to carry one.

    Args:
        image: an :class:`Image`, or an (H, W, 3) RGB array (uint8 or float in [0, 255]).
    """
    rgb = image.rgb * 255.0 if isinstance(image, Image) else np.asarray(image)
    if rgb.ndim != 3 or min(rgb.shape[:2]) < MIN_SIDE:
        return None
    return detect_frame(rgb[:, :, :3])


def read_watermark(path: str | os.PathLike[str]) -> WatermarkResult | None:
    """Decode an image file's pixels and look for the watermark (metadata is not needed).

    Raises:
        MediaError: the file is not an image strata can read.
    """
    from strata.media.image_io import load_image

    return detect_watermark(load_image(path))


__all__ = [
    "ENV_WATERMARK",
    "VIDEO_MARKS",
    "detect_video",
    "video_mark_frames",
    "video_mark_times",
    "MAGIC",
    "METHOD",
    "MIN_SIDE",
    "WatermarkResult",
    "decode_bits",
    "describe",
    "detect_frame",
    "detect_watermark",
    "embed_frame",
    "embed_watermark",
    "payload_bits",
    "read_watermark",
    "watermark_enabled",
    "watermark_residual",
]
