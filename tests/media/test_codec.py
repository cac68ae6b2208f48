"""The store's value codec: lossless, deterministic, zero-copy decode, clear errors."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest

from strata.errors import MediaError
from strata.media.codec import decode_value, encode_value, register_codec
from strata.media.image import Image, Mask

RNG = np.random.default_rng(7)


def test_image_and_mask_round_trip_bit_exactly_including_out_of_range_values() -> None:
    pixels = RNG.normal(0.5, 1.0, (9, 11, 4)).astype(np.float32)  # ops may leave [0, 1]; keep it all
    kind, data = encode_value(Image(pixels))
    assert kind == "image"
    back = decode_value(kind, data)
    assert isinstance(back, Image)
    assert back.pixels.tobytes() == pixels.tobytes()
    mask = Mask(RNG.random((5, 3), dtype=np.float32))
    kind, data = encode_value(mask)
    assert kind == "mask"
    assert decode_value(kind, data).values.tobytes() == mask.values.tobytes()


def test_same_value_gives_same_bytes_and_they_are_plain_npy() -> None:
    pixels = RNG.random((4, 6, 4), dtype=np.float32)
    _, first = encode_value(Image(pixels))
    _, second = encode_value(Image(pixels.copy()))
    assert first == second
    reference = io.BytesIO()
    np.save(reference, pixels)
    assert first == reference.getvalue()  # readable with np.load by anyone


def test_lists_and_json_values() -> None:
    batch = [Image(RNG.random((2, 3, 4), dtype=np.float32)), Mask.full(3, 2, 0.5)]
    kind, data = encode_value(batch)
    assert kind == "list"
    back = decode_value(kind, data)
    assert [type(v) for v in back] == [Image, Mask]
    assert back[0].pixels.tobytes() == batch[0].pixels.tobytes()
    assert encode_value({"b": 1, "a": [0.5, "x"]}) == ("json", b'{"a":[0.5,"x"],"b":1}')
    assert decode_value("json", b'{"a":[0.5,"x"],"b":1}') == {"a": [0.5, "x"], "b": 1}


def test_other_media_types_register_themselves() -> None:
    @dataclass(frozen=True)
    class Tone:
        hz: float

    register_codec("test-tone", Tone, lambda t: str(t.hz).encode(), lambda b: Tone(float(b)))
    assert encode_value(Tone(440.0)) == ("test-tone", b"440.0")
    assert decode_value("test-tone", b"440.0") == Tone(440.0)
    with pytest.raises(MediaError, match="codec kind 'image' is already registered for Image"):
        register_codec("image", Tone, bytes, bytes)


def test_bad_stored_data_is_reported() -> None:
    _, data = encode_value(Image(RNG.random((4, 4, 4), dtype=np.float32)))
    with pytest.raises(MediaError, match=r"stored image is truncated \(128 of 256 bytes\)"):
        decode_value("image", data[: len(data) - 128])
    with pytest.raises(MediaError, match="stored image is not valid .npy data"):
        decode_value("image", b"garbage")
    _, mask_data = encode_value(Mask.full(2, 2))
    with pytest.raises(MediaError, match=r"stored image has dtype float32, shape \(2, 2\); expected float32 with 3 dims"):
        decode_value("image", mask_data)
    with pytest.raises(MediaError, match="unknown stored value kind 'hologram'"):  # 'audio' exists now
        decode_value("hologram", b"")
    with pytest.raises(MediaError, match="stored list is malformed"):
        decode_value("list", b"STRL\x05\x00\x00\x00")
    with pytest.raises(MediaError, match="cannot store a value of type object"):
        encode_value(object())


def test_decoded_values_are_read_only_views() -> None:
    kind, data = encode_value(Image(RNG.random((3, 3, 4), dtype=np.float32)))
    back = decode_value(kind, data)
    assert not back.pixels.flags.writeable


def test_parts_join_to_the_encoded_bytes_and_the_store_hashes_them_as_one() -> None:
    import hashlib

    from strata.media.codec import encode_value_parts
    from strata.store.blobs import sha256_parts

    values = [Image(RNG.random((5, 7, 4), dtype=np.float32)), Mask(RNG.random((3, 2), dtype=np.float32)),
              {"a": 1}, [Image(RNG.random((2, 2, 4), dtype=np.float32))]]
    for value in values:
        kind, data = encode_value(value)
        parts_kind, parts = encode_value_parts(value)
        assert (parts_kind, b"".join(parts)) == (kind, data)
        assert sha256_parts(parts) == hashlib.sha256(data).hexdigest()


def test_a_stored_image_keeps_the_id_of_its_np_save_bytes(tmp_path) -> None:
    import hashlib

    from strata.store import Store

    pixels = RNG.random((6, 5, 4), dtype=np.float32)
    reference = io.BytesIO()
    np.save(reference, pixels)
    store = Store(tmp_path / "store")
    refs = store.cache_record("k", "test", {"image": Image(pixels)}, None, write_behind=True)
    store.flush()
    assert refs["image"] == hashlib.sha256(reference.getvalue()).hexdigest()
    assert store.blobs.path(refs["image"]).read_bytes() == reference.getvalue()
    store.close()
