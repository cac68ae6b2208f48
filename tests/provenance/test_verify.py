"""`strata verify`: trusted / untrusted / invalid / unsigned, the history in words, bad files."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

pytest.importorskip("c2pa")

from typer.testing import CliRunner  # noqa: E402

from strata.cli.main import app  # noqa: E402
from strata.errors import MediaError  # noqa: E402
from strata.media.image import Image  # noqa: E402
from strata.media.image_io import encode_image  # noqa: E402
from strata.provenance.credentials import load_identity, make_identity_pems, sign_file_bytes  # noqa: E402
from strata.provenance.metadata import ModelRef, Provenance  # noqa: E402
from strata.provenance.verify import verify_file  # noqa: E402

PROV = Provenance(source="generated", op="image.generate", models=[ModelRef(id="strata/t2i-tiny", hash="ab" * 32)],
                  prompt="a red apple", seed=3, asset_id="abcd" + "0" * 60, created=None)


@pytest.fixture(autouse=True)
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_CONFIG", str(tmp_path / "config"))
    for var in ("STRATA_SIGN_CERT", "STRATA_SIGN_KEY", "STRATA_TRUST_ANCHORS"):
        monkeypatch.delenv(var, raising=False)


def png(metadata: Provenance | None = PROV, side: int = 48) -> bytes:
    rgb = (np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8)
    return encode_image(Image.from_array(rgb), "png", metadata=metadata)


def write(tmp_path, name: str, data: bytes):
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def test_signed_file_is_trusted_with_its_history_in_a_fresh_process(tmp_path):
    path = write(tmp_path, "apple.png", sign_file_bytes(png(), "png", PROV))
    r = subprocess.run([sys.executable, "-c", "from strata.cli.main import app; app()", "verify", str(path), "--json",
                        "--no-watermark"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["credentials"] == "trusted" and report["label"] == "AI-generated"
    assert report["verdict"].startswith("Trusted content credentials (signed by strata local signer")
    history = "\n".join(report["history"])
    assert "Created by strata/t2i-tiny" in history and "trainedAlgorithmicMedia" in history
    assert 'Prompt: "a red apple"' in history and "weights sha256 abababababab" in history


def test_audio_and_video_provenance_comes_from_the_credentials(tmp_path):
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(800, "<i2").tobytes())
    path = write(tmp_path, "a.wav", sign_file_bytes(buf.getvalue(), "wav", PROV))
    report = verify_file(path)
    assert (report.kind, report.credentials, report.watermark) == ("audio", "trusted", "not checked")
    assert report.provenance["prompt"] == "a red apple"


def test_a_flipped_byte_is_invalid_and_exits_1(tmp_path):
    data = bytearray(sign_file_bytes(png(), "png", PROV))
    data[data.find(b"IDAT") + 20] ^= 0x01
    path = write(tmp_path, "flipped.png", bytes(data))
    report = verify_file(path, check_watermark=False)
    assert report.credentials == "invalid" and "assertion.dataHash.mismatch" in report.credentials_detail
    r = CliRunner().invoke(app, ["verify", str(path), "--no-watermark"])
    assert r.exit_code == 1 and "INVALID content credentials" in r.output


def test_a_foreign_signer_is_valid_but_untrusted(tmp_path):
    for name, data in make_identity_pems(common_name="someone else").items():
        (tmp_path / name).write_bytes(data)
    other = load_identity(tmp_path / "signer.pem", tmp_path / "signer.key")
    path = write(tmp_path, "foreign.png", sign_file_bytes(png(), "png", PROV, identity=other))
    report = verify_file(path, check_watermark=False)
    assert report.credentials == "untrusted" and report.signer.startswith("someone else")
    assert "not trusted here" in report.verdict


def test_unsigned_plain_and_truncated_files_get_clear_answers(tmp_path):
    plain = verify_file(write(tmp_path, "plain.png", png(None)), check_watermark=False)
    assert plain.credentials == "unsigned" and plain.provenance is None
    assert plain.history == ["No provenance found: no credentials, no strata metadata, no strata watermark"]

    signed = sign_file_bytes(png(side=200), "png", PROV)
    cut = verify_file(write(tmp_path, "cut.png", signed[: len(signed) // 2]))
    assert cut.credentials == "invalid" and "damaged or truncated" in cut.credentials_detail
    assert cut.watermark == "unreadable"

    unsigned = png(side=200)
    cut = verify_file(write(tmp_path, "cut2.png", unsigned[: len(unsigned) // 2]), check_watermark=False)
    assert cut.credentials == "unsigned" and any("damaged or truncated" in p for p in cut.problems)


def test_not_media_and_missing_files(tmp_path):
    path = write(tmp_path, "notes.png", b"just some text\n" * 20)
    report = verify_file(path)
    assert report.kind == "unknown" and report.verdict.startswith("Not a media file strata can verify")
    r = CliRunner().invoke(app, ["verify", str(path)])
    assert r.exit_code == 2 and "Not a media file" in r.output
    with pytest.raises(MediaError, match="no such file"):
        verify_file(tmp_path / "missing.png")
    r = CliRunner().invoke(app, ["verify", str(tmp_path / "missing.png")])
    assert r.exit_code == 2 and "no such file" in " ".join(r.output.split())


def test_stripped_metadata_still_reports_the_watermark(tmp_path):
    pytest.importorskip("onnxruntime")
    from strata.provenance.watermark import embed_watermark

    import skimage.data

    marked = embed_watermark(Image.from_array(skimage.data.coffee()[:256, 100:356]), PROV.asset_id)
    buf = io.BytesIO()
    PIL.Image.fromarray(marked.to_uint8()[:, :, :3]).save(buf, "JPEG", quality=85)  # no metadata at all
    report = verify_file(write(tmp_path, "stripped.jpg", buf.getvalue()))
    assert report.credentials == "unsigned" and report.provenance is None
    assert report.watermark == "found" and report.watermark_asset_hint == "abcd"
    assert "the watermark says strata made this" in "\n".join(report.history)
