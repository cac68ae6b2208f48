"""Content credentials: the local identity, signing every format, trust, tampering, the edit chain."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

c2pa = pytest.importorskip("c2pa")

from strata.errors import MediaError  # noqa: E402
from strata.media.image import Image  # noqa: E402
from strata.media.image_io import encode_image  # noqa: E402
from strata.provenance.credentials import (  # noqa: E402
    CredentialsError,
    Ingredient,
    create_identity,
    load_identity,
    make_identity_pems,
    sign_file_bytes,
    trust_anchors,
)
from strata.provenance.metadata import ModelRef, Provenance  # noqa: E402

MODEL = ModelRef(id="strata/t2i-tiny", hash="ab" * 32)
GENERATED = Provenance(source="generated", op="image.generate", models=[MODEL], prompt="a red apple", seed=3,
                       asset_id="f" * 64, created=None)
EDITED = Provenance(source="ai-edited", op="enhance.exposure", models=[MODEL], input_assets=["e" * 64],
                    asset_id="d" * 64, created=None)


@pytest.fixture(autouse=True)
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_CONFIG", str(tmp_path / "config"))
    for var in ("STRATA_SIGN_CERT", "STRATA_SIGN_KEY", "STRATA_SIGN", "STRATA_TRUST_ANCHORS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "config"


def image_bytes(fmt: str) -> bytes:
    rgb = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    return encode_image(Image.from_array(rgb), fmt, metadata=GENERATED)


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.sin(np.arange(4000) / 5) * 3000).astype("<i2").tobytes())
    return buf.getvalue()


def mp4_bytes() -> bytes:
    av = pytest.importorskip("av")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("h264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 40, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


READ_IN_FRESH_PROCESS = """
import io, json, sys, c2pa
anchors, paths = sys.argv[1], sys.argv[2:]
ctx = c2pa.Context.from_dict({"trust": {"user_anchors": open(anchors).read()}}) if anchors != "-" else None
out = {}
for p in paths:
    with open(p, "rb") as f:
        r = c2pa.Reader(None, f, context=ctx) if ctx else c2pa.Reader(None, f)
        out[p] = r.get_validation_state()
print(json.dumps(out))
"""


def states(paths: list[Path], anchors: Path | None) -> dict[str, str]:
    r = subprocess.run([sys.executable, "-c", READ_IN_FRESH_PROCESS, str(anchors or "-"), *map(str, paths)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {Path(k).name: v for k, v in json.loads(r.stdout).items()}


def content_offset(data: bytes, suffix: str) -> int:
    """An offset inside the pixels/samples (not in the manifest, which may hold padding)."""
    marker = {".png": b"IDAT", ".jpeg": b"\xff\xda", ".webp": b"VP8 ", ".wav": b"data", ".mp4": b"mdat"}.get(suffix)
    return data.find(marker) + 20 if marker else 200  # TIFF: strips follow the 8-byte header


def manifest_of(data: bytes) -> tuple[dict, dict]:
    with c2pa.Reader(None, io.BytesIO(data)) as r:
        store = json.loads(r.json())
    return store, store["manifests"][store["active_manifest"]]


def test_identity_is_a_ca_and_leaf_with_private_keys(config):
    ident = create_identity()
    folder = config / "identity"
    assert ident.directory == folder and ident.alg == "es256"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for key in ("signer.key", "root.key"):
        assert stat.S_IMODE((folder / key).stat().st_mode) == 0o600
    from cryptography import x509

    leaf, root = x509.load_pem_x509_certificates(ident.cert_chain_pem)
    assert leaf.issuer == root.subject != leaf.subject
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # a second use loads the same identity
    assert load_identity().fingerprint == ident.fingerprint
    assert trust_anchors() == (folder / "root.pem").read_text()


def test_every_format_reads_back_trusted_in_a_fresh_process_and_a_flipped_byte_is_invalid(tmp_path):
    files = {f"a.{f}": image_bytes(f) for f in ("png", "jpeg", "webp", "tiff")}
    files["a.wav"], files["a.mp4"] = wav_bytes(), mp4_bytes()
    paths = []
    for name, data in files.items():
        signed = sign_file_bytes(data, name.rsplit(".", 1)[1], GENERATED)
        assert len(signed) - len(data) < 20_000  # no thumbnail: a few kB of manifest
        paths.append(tmp_path / name)
        paths[-1].write_bytes(signed)
    anchors = tmp_path / "anchors.pem"
    anchors.write_text(trust_anchors())
    assert set(states(paths, anchors).values()) == {"Trusted"}
    assert set(states(paths, None).values()) == {"Valid"}  # signature fine, signer unknown
    flipped = []
    for p in paths:
        data = bytearray(p.read_bytes())
        data[content_offset(bytes(data), p.suffix)] ^= 0x01
        flipped.append(p.with_name("flipped" + p.suffix))
        flipped[-1].write_bytes(bytes(data))
    assert set(states(flipped, anchors).values()) == {"Invalid"}


def test_manifest_records_the_model_the_action_and_the_provenance():
    _, m = manifest_of(sign_file_bytes(image_bytes("png"), "image/png", GENERATED))
    actions = next(a for a in m["assertions"] if a["label"] == "c2pa.actions.v2")["data"]["actions"]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["softwareAgent"]["name"] == "strata/t2i-tiny"
    assert actions[0]["digitalSourceType"].endswith("trainedAlgorithmicMedia")
    assert actions[0]["parameters"]["models"] == [{"id": MODEL.id, "hash": MODEL.hash}]
    prov = next(a for a in m["assertions"] if a["label"] == "org.strata.provenance")["data"]
    assert Provenance.model_validate({k: v for k, v in prov.items() if k in Provenance.model_fields}) == GENERATED


def test_an_edit_of_a_signed_file_keeps_its_manifest_as_the_parent():
    parent = sign_file_bytes(image_bytes("png"), "png", GENERATED)
    child = sign_file_bytes(image_bytes("jpeg"), "jpeg", EDITED,
                            ingredients=[Ingredient(parent, "image/png", "apple.png", "parentOf")])
    store, m = manifest_of(child)
    assert len(store["manifests"]) == 2
    ingredients = {i["title"]: i for i in m["ingredients"]}
    assert ingredients["apple.png"]["relationship"] == "parentOf"
    assert ingredients["apple.png"]["active_manifest"] in store["manifests"]
    assert ingredients[f"strata asset {'e' * 64}"]["relationship"] == "componentOf"
    actions = next(a for a in m["assertions"] if a["label"] == "c2pa.actions.v2")["data"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.color_adjustments"]


def test_user_certificate_from_env(tmp_path, monkeypatch):
    pems = make_identity_pems(common_name="Ada's studio")
    for name, data in pems.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.setenv("STRATA_SIGN_CERT", str(tmp_path / "signer.pem"))
    with pytest.raises(CredentialsError, match="both a certificate and a private key"):
        load_identity()
    monkeypatch.setenv("STRATA_SIGN_KEY", str(tmp_path / "signer.key"))
    ident = load_identity()
    assert ident.directory is None and ident.trust_anchor_pem is None
    _, m = manifest_of(sign_file_bytes(image_bytes("png"), "png", GENERATED))
    assert m["signature_info"]["common_name"] == "Ada's studio"


def test_bad_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(MediaError, match="cannot sign 'image/gif'"):
        sign_file_bytes(b"GIF89a", "image/gif", GENERATED)
    with pytest.raises(MediaError, match="cannot add content credentials"):
        sign_file_bytes(b"not a png at all", "png", GENERATED)
    (tmp_path / "k.pem").write_text("nonsense")
    (tmp_path / "c.pem").write_text("nonsense")
    with pytest.raises(CredentialsError, match="not an unencrypted PEM private key|not a PEM certificate"):
        load_identity(tmp_path / "c.pem", tmp_path / "k.pem")
    # a self-signed leaf (no CA) is refused by c2pa, with a hint
    pems = make_identity_pems()
    (tmp_path / "self.pem").write_bytes(pems["root.pem"])
    (tmp_path / "self.key").write_bytes(pems["root.key"])
    with pytest.raises(CredentialsError, match="c2pa refused to sign|cannot sign with"):
        sign_file_bytes(image_bytes("png"), "png", GENERATED, identity=load_identity(tmp_path / "self.pem", tmp_path / "self.key"))


def test_workflow_outputs_are_signed_with_the_loaded_file_as_parent(tmp_path, monkeypatch):
    from strata.store import Store
    from strata.workflow.executor import Executor
    from strata.workflow.spec import parse_workflow

    (tmp_path / "apple.png").write_bytes(sign_file_bytes(image_bytes("png"), "png", GENERATED))
    wf = {"name": "w", "nodes": [{"id": "load", "op": "io.load_image", "params": {"path": str(tmp_path / "apple.png")}},
                                 {"id": "flip", "op": "edit.flip", "inputs": {"image": "load"}}],
          "outputs": {"flipped.png": "flip"}}
    Executor(Store(tmp_path / "store")).run(parse_workflow(wf), out_dir=tmp_path / "out")
    store, m = manifest_of((tmp_path / "out" / "flipped.png").read_bytes())
    assert m["title"] == "flipped.png" and len(store["manifests"]) == 2
    assert [i["title"] for i in m["ingredients"] if i["relationship"] == "parentOf"] == ["apple.png"]
    actions = next(a for a in m["assertions"] if a["label"] == "c2pa.actions.v2")["data"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.orientation"]
    monkeypatch.setenv("STRATA_SIGN", "0")
    Executor(Store(tmp_path / "store2")).run(parse_workflow(wf), out_dir=tmp_path / "out2")
    with pytest.raises(c2pa.C2paError):
        manifest_of((tmp_path / "out2" / "flipped.png").read_bytes())
