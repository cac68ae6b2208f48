"""The invisible watermark: payload, embedding in images and frames, survival, the output hook."""

from __future__ import annotations

import io
import json

import numpy as np
import PIL.Image
import pytest

pytest.importorskip("onnxruntime")
if __import__("importlib.util").util.find_spec("imwatermark") is None:
    pytest.skip("invisible-watermark is not installed", allow_module_level=True)

from strata.errors import MediaError  # noqa: E402
from strata.media.image import Image  # noqa: E402
from strata.provenance import watermark as wm  # noqa: E402


def photo(side: int = 256) -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[40:40 + side, 100:100 + side])


def test_payload_is_magic_then_asset_bits():
    bits = wm.payload_bits("abcd0123")
    assert bits.shape == (32,) and bits.dtype == np.uint8
    assert bytes(np.packbits(bits)).hex() == "5374abcd"
    assert bytes(np.packbits(wm.payload_bits(None))).hex() == "53740000"
    assert bytes(np.packbits(wm.payload_bits("not hex"))).hex() == "53740000"
    assert wm.describe("abcd0123")["payload"] == "5374abcd"


def test_mark_is_invisible_keeps_alpha_and_reads_back():
    rgba = np.dstack([photo(), np.full((256, 256), 200, np.uint8)])
    image = Image.from_array(rgba)
    marked = wm.embed_watermark(image, "beef" + "0" * 60)
    assert np.array_equal(marked.alpha, image.alpha)
    mse = np.mean((marked.rgb - image.rgb) ** 2)
    assert 10 * np.log10(1.0 / mse) > 38  # PSNR in dB
    found = wm.detect_watermark(marked)
    assert found is not None and found.found and found.magic_errors == 0 and found.asset_hint == "beef"


def test_an_unmarked_photo_is_not_detected_and_tiny_images_are_left_alone():
    result = wm.detect_watermark(photo())
    assert result is not None and not result.found and result.asset_hint is None
    tiny = Image.from_array(photo()[:64, :64])
    assert wm.embed_watermark(tiny, "ab") is tiny
    assert wm.detect_watermark(tiny) is None


def test_bad_frames_say_what_is_wrong():
    with pytest.raises(MediaError, match=r"must be an \(H, W, 3\) RGB array"):
        wm.embed_frame(np.zeros((256, 256), np.uint8), wm.payload_bits(None))
    with pytest.raises(MediaError, match="needs at least 128 pixels a side"):
        wm.embed_frame(np.zeros((100, 300, 3), np.uint8), wm.payload_bits(None))
    with pytest.raises(MediaError, match="must be 32 bits"):
        wm.embed_frame(np.zeros((256, 256, 3), np.uint8), np.zeros(8, np.uint8))


def test_workflow_outputs_carry_the_mark_through_jpeg_with_metadata_stripped(tmp_path, monkeypatch):
    from strata.store import Store
    from strata.workflow.executor import Executor
    from strata.workflow.spec import parse_workflow

    monkeypatch.setenv("STRATA_CONFIG", str(tmp_path / "config"))
    wf = {"name": "w", "nodes": [{"id": "cat", "op": "io.sample_image", "params": {"name": "chelsea"}}],
          "outputs": {"cat.png": "cat"}}
    result = Executor(Store(tmp_path / "store")).run(parse_workflow(wf), out_dir=tmp_path / "out")
    asset = result.refs["cat"]["image"]
    # the pixels only, re-encoded as JPEG 85 by another program: no metadata, no credentials
    pixels = np.asarray(PIL.Image.open(tmp_path / "out" / "cat.png").convert("RGB"))
    buf = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buf, "JPEG", quality=85)
    (tmp_path / "stripped.jpg").write_bytes(buf.getvalue())
    found = wm.read_watermark(tmp_path / "stripped.jpg")
    assert found is not None and found.found and found.asset_hint == asset[:4]
    c2pa = pytest.importorskip("c2pa")
    with c2pa.Reader(None, io.BytesIO((tmp_path / "out" / "cat.png").read_bytes())) as r:
        store = json.loads(r.json())
    manifest = store["manifests"][store["active_manifest"]]
    note = next(a["data"] for a in manifest["assertions"] if a["label"] == "org.strata.watermark")
    assert note["method"] == wm.METHOD and note["payload"] == "5374" + asset[:4]


def test_mark_moments_follow_from_the_duration_alone():
    assert wm.video_mark_times(30.0) == [3.75, 11.25, 18.75, 26.25]  # four, centered in quarters
    assert wm.video_mark_times(2.0) == [0.5, 1.5]  # at most one a second
    assert wm.video_mark_times(0.4) == [0.2]
    assert wm.video_mark_frames(48, 24.0) == {12, 36}


def test_rendered_video_carries_the_mark_through_a_re_encode(tmp_path):
    import av

    from strata.ops.motion import camera
    from strata.ops.video import render

    still = Image.from_array(np.ascontiguousarray(__import__("skimage.data").data.astronaut()[:288, 80:400]))
    clip = camera(still, move="pan_right", duration_s=2.0, width=256, height=224, fps=12)
    marked = tmp_path / "marked.mp4"
    marked.write_bytes(render(clip).data)
    found = wm.detect_video(marked)
    assert found is not None and found.found

    # Re-encode (decode every frame, H.264 again with B-frames, at a lower quality): timestamps stay, the mark too.
    again = tmp_path / "again.mp4"
    with av.open(str(marked)) as src, av.open(str(again), "w") as dst:
        out = dst.add_stream("libx264", rate=12)
        out.width, out.height, out.pix_fmt = 256, 224, "yuv420p"
        out.options = {"crf": "23"}  # CRF 28 breaks it (measured; see watermark.VIDEO_GAIN)
        for i, frame in enumerate(src.decode(video=0)):
            copy = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            copy.pts = i  # as ffmpeg does: the frames keep their moments
            for packet in out.encode(copy):
                dst.mux(packet)
        for packet in out.encode(None):
            dst.mux(packet)
    assert wm.detect_video(again).found

    plain = tmp_path / "plain.mp4"
    plain.write_bytes(render(clip, watermark=False).data)
    assert not wm.detect_video(plain).found
