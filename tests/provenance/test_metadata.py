"""Provenance embedded in files: round trip per format, the PNG chunks and XMP packets other
tools read, the exact AUTOMATIC1111 text, labels, and files without or with damaged metadata."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from PIL import PngImagePlugin
from pydantic import ValidationError

from strata.errors import MediaError
from strata.media.image import Image
from strata.media.image_io import encode_image, save_image
from strata.provenance.metadata import (
    STRATA_XMP_NS,
    ModelRef,
    Provenance,
    describe,
    parse_a1111_parameters,
    read_provenance,
)

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
XMP_NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "strata": STRATA_XMP_NS,
}
WORKFLOW = {"seed": 7, "nodes": [{"id": "gen", "op": "generate.text_to_image", "params": {"prompt": "a red apple"}}]}


def generated(**overrides) -> Provenance:
    fields = dict(
        source="generated",
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        run_id="run-1",
        asset_id="9f" * 32,
        node_id="gen",
        op="generate.text_to_image",
        params={"prompt": "a red apple, on a table", "steps": 20},
        seed=1234,
        models=[ModelRef(id="strata/t2i-tiny", hash="0123456789abcdef" * 4)],
        workflow=WORKFLOW,
        prompt="a red apple, on a table",
        negative_prompt="blurry, text",
        steps=20,
        sampler="DPM++ 2M",
        guidance=4.5,
        width=16,
        height=12,
    )
    fields.update(overrides)
    return Provenance(**fields)


def picture(opaque: bool = True) -> Image:
    a = np.random.default_rng(5).random((12, 16, 4), dtype=np.float32)
    if opaque:
        a[:, :, 3] = 1
    return Image(a)


@pytest.mark.parametrize(
    "name,kwargs",
    [("a.png", {}), ("a.png", {"bit_depth": 16}), ("a.jpg", {}), ("a.webp", {}), ("a.webp", {"lossless": True}),
     ("a.tif", {}), ("a.tif", {"bit_depth": 16})],
)
def test_provenance_round_trips_through_every_format(tmp_path: Path, name: str, kwargs: dict) -> None:
    prov = generated()
    path = save_image(picture(), tmp_path / name, metadata=prov, **kwargs)
    assert read_provenance(path) == prov


def test_png_chunks_hold_json_workflow_label_and_a1111_parameters(tmp_path: Path) -> None:
    prov = generated()
    path = save_image(picture(), tmp_path / "a.png", metadata=prov)
    text = PIL.Image.open(path).text  # what any PNG reader sees
    assert text["strata:label"] == "AI-generated"
    assert json.loads(text["strata:workflow"]) == WORKFLOW
    stored = json.loads(text["strata:provenance"])
    assert (stored["seed"], stored["label"], stored["models"][0]["id"]) == (1234, "AI-generated", "strata/t2i-tiny")
    assert "workflow" not in stored  # stored once, in its own chunk
    assert text["parameters"] == (
        "a red apple, on a table\n"
        "Negative prompt: blurry, text\n"
        "Steps: 20, Sampler: DPM++ 2M, CFG scale: 4.5, Seed: 1234, Size: 16x12, "
        "Model hash: 0123456789, Model: strata/t2i-tiny"
    )
    assert text["Software"] == "strata 0.1.0"
    xmp = ET.fromstring(text["XML:com.adobe.xmp"])
    assert xmp.find(".//Iptc4xmpExt:DigitalSourceType", XMP_NS).text == IPTC + "trainedAlgorithmicMedia"


def test_a1111_text_follows_a1111_rules() -> None:
    # no negative prompt → no "Negative prompt:" line; A1111 JSON-quotes values with , : or newlines
    prov = generated(negative_prompt=None, sampler="Euler a, karras", guidance=7.0, width=None, models=[])
    assert prov.a1111_parameters() == (
        'a red apple, on a table\nSteps: 20, Sampler: "Euler a, karras", CFG scale: 7, Seed: 1234'
    )
    parsed = parse_a1111_parameters(prov.a1111_parameters())
    assert parsed["Sampler"] == "Euler a, karras"
    assert parsed["Prompt"] == "a red apple, on a table"
    assert generated(prompt=None, source="edited").a1111_parameters() is None


def test_a1111_parser_reads_text_written_by_a1111() -> None:
    text = (
        "masterpiece, a castle\nat dusk\nNegative prompt: lowres\n"
        "Steps: 30, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x768, Model hash: 6ce0161689, "
        "Model: v1-5-pruned-emaonly, Version: v1.6.0"
    )
    parsed = parse_a1111_parameters(text)
    assert parsed["Prompt"] == "masterpiece, a castle\nat dusk"
    assert parsed["Negative prompt"] == "lowres"
    assert (parsed["Steps"], parsed["Size"], parsed["Model"], parsed["Version"]) == ("30", "512x768", "v1-5-pruned-emaonly", "v1.6.0")


@pytest.mark.parametrize("name", ["a.jpg", "a.webp", "a.tif"])
def test_xmp_packet_has_iptc_source_type_description_and_strata_json(tmp_path: Path, name: str) -> None:
    path = save_image(picture(), tmp_path / name, metadata=generated())
    xmp = PIL.Image.open(path).info["xmp"]
    assert xmp.startswith(b"<?xpacket begin=") and xmp.rstrip().endswith(b'<?xpacket end="w"?>')
    root = ET.fromstring(xmp)
    desc = root.find(".//rdf:Description", XMP_NS)
    assert desc.find("Iptc4xmpExt:DigitalSourceType", XMP_NS).text == IPTC + "trainedAlgorithmicMedia"
    assert desc.find("dc:description/rdf:Alt/rdf:li", XMP_NS).text == (
        "AI-generated with strata 0.1.0 from the prompt: a red apple, on a table"
    )
    assert desc.find("strata:label", XMP_NS).text == "AI-generated"
    assert json.loads(desc.find("strata:provenance", XMP_NS).text)["seed"] == 1234
    assert json.loads(desc.find("strata:workflow", XMP_NS).text) == WORKFLOW


@pytest.mark.parametrize("name", ["a.jpg", "a.webp"])
def test_jpeg_and_webp_carry_a1111_text_in_exif_user_comment(tmp_path: Path, name: str) -> None:
    path = save_image(picture(), tmp_path / name, metadata=generated())
    exif = PIL.Image.open(path).getexif()
    comment = exif.get_ifd(0x8769)[0x9286]
    assert comment[:8] == b"UNICODE\x00"
    assert comment[8:].decode("utf-16-be") == generated().a1111_parameters()
    assert exif[0x0131] == "strata 0.1.0"


@pytest.mark.parametrize(
    "source,label,iptc",
    [("generated", "AI-generated", "trainedAlgorithmicMedia"),
     ("ai-edited", "AI-generated", "compositeWithTrainedAlgorithmicMedia"),
     ("edited", "edited with strata", "humanEdits")],
)
def test_label_and_digital_source_type_follow_the_source(tmp_path: Path, source: str, label: str, iptc: str) -> None:
    prov = Provenance(source=source, op="enhance.exposure", params={"stops": 0.5})
    assert (prov.label, prov.digital_source_type) == (label, IPTC + iptc)
    info = describe(save_image(picture(), tmp_path / "a.jpg", metadata=prov))
    assert (info["label"], info["digital_source_type"]) == (label, IPTC + iptc)


def test_without_a_timestamp_files_are_byte_identical_across_runs(tmp_path: Path) -> None:
    prov = generated(created=None)
    data = encode_image(picture(), "JPEG", metadata=prov)
    assert b"CreateDate" not in data
    assert data == encode_image(picture(), "JPEG", metadata=generated(created=None))
    assert read_provenance(save_image(picture(), tmp_path / "a.jpg", metadata=prov)) == prov


def test_a_prompt_cannot_be_labelled_edited_and_typos_fail() -> None:
    with pytest.raises(ValidationError, match="a prompt means a generative model made the pixels"):
        Provenance(source="edited", prompt="a cat")
    with pytest.raises(ValidationError, match="negative\n  Extra inputs are not permitted"):
        Provenance(source="generated", prompt="a cat", negative="blurry")


def test_files_from_newer_versions_with_unknown_fields_still_load(tmp_path: Path) -> None:
    stored = json.loads(generated().provenance_json()) | {"watermark": {"bits": 32}}
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_itxt("strata:provenance", json.dumps(stored))
    PIL.Image.new("RGB", (4, 4)).save(tmp_path / "new.png", pnginfo=pnginfo)
    assert read_provenance(tmp_path / "new.png") == generated(workflow=None)


def test_unicode_prompt_survives_every_format(tmp_path: Path) -> None:
    prov = generated(prompt="ein Apfel 🍎 — «rot»", negative_prompt="ぼやけ")
    for name in ("a.png", "a.jpg", "a.webp", "a.tif"):
        assert read_provenance(save_image(picture(), tmp_path / name, metadata=prov)) == prov


def test_embedding_is_deterministic() -> None:
    prov = generated()
    for fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        assert encode_image(picture(), fmt, metadata=prov) == encode_image(picture(), fmt, metadata=prov)


def test_describe_prints_what_strata_info_needs(tmp_path: Path) -> None:
    path = save_image(picture(opaque=False), tmp_path / "a.png", bit_depth=16, metadata=generated())
    info = describe(path)
    assert {k: info[k] for k in ("format", "width", "height", "mode", "bit_depth", "has_alpha")} == {
        "format": "PNG", "width": 16, "height": 12, "mode": "RGBA", "bit_depth": 16, "has_alpha": True}
    assert (info["provenance"], info["label"], info["prompt"], info["seed"], info["size"]) == (
        "strata", "AI-generated", "a red apple, on a table", 1234, "16x12")
    assert info["models"] == [{"id": "strata/t2i-tiny", "hash": "0123456789abcdef" * 4}]
    assert info["params"] == {"prompt": "a red apple, on a table", "steps": 20}
    assert info["has_workflow"] is True
    json.dumps(info)  # printable as JSON


def test_foreign_a1111_png_is_described_but_has_no_strata_provenance(tmp_path: Path) -> None:
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 8x8")
    PIL.Image.new("RGB", (8, 8)).save(tmp_path / "a1111.png", pnginfo=pnginfo)
    assert read_provenance(tmp_path / "a1111.png") is None
    info = describe(tmp_path / "a1111.png")
    assert info["provenance"] == "a1111"
    assert info["a1111"]["Prompt"] == "a cat" and info["a1111"]["Seed"] == "1"


@pytest.mark.parametrize("name", ["plain.png", "plain.jpg", "plain.webp", "plain.tif"])
def test_files_without_strata_metadata_give_none(tmp_path: Path, name: str) -> None:
    path = save_image(picture(), tmp_path / name)
    assert read_provenance(path) is None
    assert describe(path)["provenance"] is None


def test_foreign_xmp_without_strata_fields_gives_none(tmp_path: Path) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
    PIL.Image.new("RGB", (4, 4)).save(tmp_path / "f.jpg", xmp=xmp)
    assert read_provenance(tmp_path / "f.jpg") is None


def test_corrupt_file_raises_media_error(tmp_path: Path) -> None:
    data = encode_image(picture(), "PNG", metadata=generated())
    (tmp_path / "c.png").write_bytes(data[:20])
    with pytest.raises(MediaError, match=r"c\.png: the PNG header is corrupt or truncated"):
        read_provenance(tmp_path / "c.png")
    (tmp_path / "n.png").write_bytes(b"hello")
    with pytest.raises(MediaError, match="supported formats are PNG, JPEG, WebP and TIFF"):
        describe(tmp_path / "n.png")


def test_damaged_strata_json_raises_media_error(tmp_path: Path) -> None:
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_itxt("strata:provenance", '{"source": "generated", "seed": ')
    PIL.Image.new("RGB", (4, 4)).save(tmp_path / "d.png", pnginfo=pnginfo)
    with pytest.raises(MediaError, match=r"d\.png: the strata provenance metadata is damaged"):
        read_provenance(tmp_path / "d.png")


def test_damaged_strata_xmp_raises_media_error(tmp_path: Path) -> None:
    PIL.Image.new("RGB", (4, 4)).save(tmp_path / "d.jpg", xmp=f'<x:xmpmeta xmlns:s="{STRATA_XMP_NS}"><unclosed>'.encode())
    with pytest.raises(MediaError, match=r"d\.jpg: the strata XMP metadata is damaged"):
        read_provenance(tmp_path / "d.jpg")


def test_workflow_too_large_for_jpeg_says_which_formats_can_hold_it(tmp_path: Path) -> None:
    big = generated(workflow={"nodes": [{"id": f"n{i}", "op": "edit.crop", "params": {"note": "x" * 100}} for i in range(800)]})
    with pytest.raises(MediaError, match="more than a JPEG can hold .*save as PNG, WebP or TIFF"):
        encode_image(picture(), "JPEG", metadata=big)
    assert read_provenance(save_image(picture(), tmp_path / "big.png", metadata=big)) == big
