"""Image file I/O: round trips per format and bit depth, the layouts other tools write,
EXIF orientation, masks, atomic writes, and every bad input with its message."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import tifffile
from PIL import ImageOps

from strata.errors import MediaError
from strata.media import image_io
from strata.media.image import Image, Mask
from strata.media.image_io import encode_image, load_image, load_mask, probe_image, save_image

RNG = np.random.default_rng(1234)


def random_image(h: int = 12, w: int = 17, *, opaque: bool = False) -> Image:
    a = RNG.random((h, w, 4), dtype=np.float32)
    if opaque:
        a[:, :, 3] = 1.0
    return Image(a)


def png_bytes(width: int, height: int, *, depth: int = 8, color_type: int = 2, rows: bytes | None = None) -> bytes:
    """A PNG built chunk by chunk, for layouts no library writes (and for lying headers)."""

    def chunk(ctype: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows or b"")) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", ["png", "tif"])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_lossless_round_trip_is_exact_at_the_file_bit_depth(tmp_path: Path, ext: str, bit_depth: int) -> None:
    top = 2**bit_depth - 1
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    values = RNG.integers(0, top + 1, (9, 13, 4), dtype=dtype)
    path = save_image(Image.from_array(values), tmp_path / f"x.{ext}", bit_depth=bit_depth)
    back = load_image(path)
    np.testing.assert_array_equal(np.rint(back.pixels * top).astype(dtype), values)
    info = probe_image(path)
    assert (info.bit_depth, info.mode, info.has_alpha) == (bit_depth, "RGBA", True)


def test_16_bit_png_keeps_values_8_bit_cannot_hold(tmp_path: Path) -> None:
    values = np.full((4, 4, 3), 1000, np.uint16)  # 1000/65535 lies between two 8-bit levels
    back = load_image(save_image(Image.from_array(values), tmp_path / "x.png", bit_depth=16))
    assert np.all(np.rint(back.rgb * 65535) == 1000)


def test_webp_lossless_is_exact_including_color_under_transparent_pixels(tmp_path: Path) -> None:
    values = RNG.integers(0, 256, (10, 11, 4), dtype=np.uint8)
    values[0, 0, 3] = 0
    back = load_image(save_image(Image.from_array(values), tmp_path / "x.webp", lossless=True))
    np.testing.assert_array_equal(back.to_uint8(), values)


@pytest.mark.parametrize("ext,kwargs", [("jpg", {}), ("webp", {"quality": 90})])
def test_lossy_formats_stay_close(tmp_path: Path, ext: str, kwargs: dict) -> None:
    yy, xx = np.mgrid[0:32, 0:48].astype(np.float32)
    smooth = np.stack([xx / 47, yy / 31, (xx + yy) / 78, np.ones_like(xx)], axis=2)
    back = load_image(save_image(Image(smooth), tmp_path / f"x.{ext}", **kwargs))
    assert back.size == (48, 32)
    assert float(np.abs(back.pixels - smooth).mean()) < 2 / 255


def test_opaque_images_are_written_as_rgb_and_transparent_ones_as_rgba(tmp_path: Path) -> None:
    for name, image, mode in [("o.png", random_image(opaque=True), "RGB"), ("t.png", random_image(), "RGBA"),
                              ("o.webp", random_image(opaque=True), "RGB"), ("t.webp", random_image(), "RGBA")]:
        assert probe_image(save_image(image, tmp_path / name)).mode == mode
    assert load_image(tmp_path / "o.png").is_opaque


def test_jpeg_refuses_transparency_unless_given_a_background(tmp_path: Path) -> None:
    half = Image.solid(8, 8, (1.0, 0.0, 0.0, 0.5))
    with pytest.raises(MediaError, match=r"JPEG cannot store alpha; save as PNG.*background=\(1, 1, 1\)"):
        save_image(half, tmp_path / "x.jpg")
    assert not any(tmp_path.iterdir())
    back = load_image(save_image(half, tmp_path / "x.jpg", background=(1.0, 1.0, 1.0)))
    # straight-alpha "over" onto white: red·0.5 + white·0.5 = (1, 0.5, 0.5)
    np.testing.assert_allclose(back.rgb.mean(axis=(0, 1)), [1.0, 0.5, 0.5], atol=3 / 255)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_16_bit_is_refused_for_8_bit_formats(fmt: str) -> None:
    with pytest.raises(MediaError, match=f"{fmt} stores 8 bits per channel; use PNG or TIFF"):
        encode_image(random_image(opaque=True), fmt, bit_depth=16)


def test_encoding_is_deterministic() -> None:
    image = random_image()
    for fmt in ("PNG", "TIFF", "WEBP"):
        assert encode_image(image, fmt) == encode_image(image, fmt)


def test_bad_save_arguments_say_what_is_allowed(tmp_path: Path) -> None:
    image = random_image(opaque=True)
    with pytest.raises(MediaError, match=r"extension '\.bmp'; use one of \.png"):
        save_image(image, tmp_path / "x.bmp")
    with pytest.raises(MediaError, match="cannot write format 'gif'; strata writes PNG, JPEG, WebP and TIFF"):
        encode_image(image, "gif")
    with pytest.raises(MediaError, match="bit_depth must be 8 or 16, got 12"):
        encode_image(image, "PNG", bit_depth=12)
    with pytest.raises(MediaError, match="quality must be a whole number from 1 to 100, got 0"):
        encode_image(image, "JPEG", quality=0)
    with pytest.raises(MediaError, match="NaN or infinite"):
        encode_image(Image(np.full((2, 2, 4), np.nan, np.float32)), "PNG")


# ----------------------------------------------------------------------------- layouts others write


def _pil_file(tmp_path: Path, name: str, im: PIL.Image.Image, **kwargs) -> Path:
    path = tmp_path / name
    im.save(path, **kwargs)
    return path


def test_gray_gray_alpha_palette_and_bilevel_files(tmp_path: Path) -> None:
    gray = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
    loaded = load_image(_pil_file(tmp_path, "l.png", PIL.Image.fromarray(gray)))
    np.testing.assert_array_equal(loaded.to_uint8()[:, :, :3], np.repeat(gray[:, :, None], 3, axis=2))
    assert loaded.is_opaque

    la = PIL.Image.merge("LA", [PIL.Image.fromarray(gray), PIL.Image.fromarray(255 - gray)])
    loaded = load_image(_pil_file(tmp_path, "la.png", la))
    np.testing.assert_array_equal(loaded.to_uint8()[:, :, 3], 255 - gray)

    palette = PIL.Image.new("P", (4, 3))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 1), 1)
    loaded = load_image(_pil_file(tmp_path, "p.png", palette, transparency=0))
    assert loaded.to_uint8()[1, 1].tolist() == [0, 0, 255, 255]
    assert loaded.to_uint8()[0, 0, 3] == 0  # palette entry 0 is transparent

    bilevel = PIL.Image.fromarray(gray > 128)
    loaded = load_image(_pil_file(tmp_path, "b.png", bilevel))
    np.testing.assert_array_equal(loaded.to_uint8()[:, :, 0], np.where(gray > 128, 255, 0))


def test_16_bit_gray_and_gray_alpha_png_keep_16_bits(tmp_path: Path) -> None:
    gray = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)
    path = _pil_file(tmp_path, "g16.png", PIL.Image.fromarray(gray))
    np.testing.assert_array_equal(np.rint(load_image(path).rgb[:, :, 0] * 65535), gray)
    # gray+alpha at 16 bits: no library here writes it, so build it (big-endian samples, filter 0)
    ga = RNG.integers(0, 65536, (5, 6, 2), dtype=np.uint16)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in ga)
    (tmp_path / "ga16.png").write_bytes(png_bytes(6, 5, depth=16, color_type=4, rows=rows))
    image = load_image(tmp_path / "ga16.png")
    np.testing.assert_array_equal(np.rint(image.pixels[:, :, [0, 3]] * 65535), ga)


def test_16_bit_tiff_from_tifffile_and_cmyk_jpeg(tmp_path: Path) -> None:
    rgb16 = RNG.integers(0, 65536, (4, 7, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    np.testing.assert_array_equal(np.rint(load_image(tmp_path / "rgb16.tif").rgb * 65535), rgb16)

    cmyk = PIL.Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # full magenta + yellow = red
    image = load_image(_pil_file(tmp_path, "cmyk.jpg", cmyk, quality=100))
    np.testing.assert_allclose(image.rgb.mean(axis=(0, 1)), [1.0, 0.0, 0.0], atol=4 / 255)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_exif_transpose(tmp_path: Path, orientation: int) -> None:
    stored = RNG.integers(0, 256, (3, 5, 3), dtype=np.uint8)  # non-square, so rotations show
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    path = _pil_file(tmp_path, "o.png", PIL.Image.fromarray(stored), exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(PIL.Image.open(path)))
    np.testing.assert_array_equal(load_image(path).to_uint8()[:, :, :3], expected)
    info = probe_image(path)
    assert (info.height, info.width, info.orientation) == (*expected.shape[:2], orientation)


def upright_reference(stored: np.ndarray, orientation: int) -> np.ndarray:
    """Pillow's exif_transpose applied to an index image tells where each stored pixel goes."""
    h, w = stored.shape[:2]
    index = PIL.Image.fromarray(np.arange(h * w, dtype=np.int32).reshape(h, w))
    exif = index.getexif()
    exif[0x0112] = orientation
    moved = np.asarray(ImageOps.exif_transpose(index))
    return stored.reshape(h * w, *stored.shape[2:])[moved]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("dtype,compression", [(np.uint8, None), (np.uint8, "zlib"), (np.uint16, None), (np.uint16, "zlib")])
def test_tiff_orientation_8_and_16_bit(tmp_path: Path, orientation: int, dtype: type, compression: str | None) -> None:
    stored = RNG.integers(0, np.iinfo(dtype).max + 1, (3, 5, 3), dtype=dtype)
    tifffile.imwrite(tmp_path / "o.tif", stored, photometric="rgb", compression=compression,
                     extratags=[(274, "H", 1, orientation, True)])
    back = np.rint(load_image(tmp_path / "o.tif").rgb * np.iinfo(dtype).max)
    np.testing.assert_array_equal(back, upright_reference(stored, orientation))
    assert probe_image(tmp_path / "o.tif").width == (3 if orientation >= 5 else 5)


def test_16_bit_png_orientation(tmp_path: Path) -> None:
    stored = RNG.integers(0, 65536, (3, 5, 3), dtype=np.uint16)
    png = encode_image(Image.from_array(stored), "PNG", bit_depth=16)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    ihdr_end = 33
    (tmp_path / "o.png").write_bytes(png[:ihdr_end] + image_io._png_chunk(b"eXIf", exif.tobytes()[6:]) + png[ihdr_end:])
    back = np.rint(load_image(tmp_path / "o.png").rgb * 65535)
    np.testing.assert_array_equal(back, np.rot90(stored, -1))  # 6: turn 90° clockwise to view


# ----------------------------------------------------------------------------- masks


def test_mask_from_gray_alpha_and_channels(tmp_path: Path) -> None:
    gray = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
    path = _pil_file(tmp_path, "g.png", PIL.Image.fromarray(gray))
    mask = load_mask(path)
    assert isinstance(mask, Mask)
    np.testing.assert_array_equal(np.rint(mask.values * 255), gray)

    rgba = RNG.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    path = _pil_file(tmp_path, "c.png", PIL.Image.fromarray(rgba))
    np.testing.assert_array_equal(np.rint(load_mask(path).values * 255), rgba[:, :, 3])  # auto → alpha
    np.testing.assert_array_equal(np.rint(load_mask(path, channel="green").values * 255), rgba[:, :, 1])
    pillow_luma = np.asarray(PIL.Image.fromarray(rgba[:, :, :3]).convert("L"), np.float32)
    assert np.abs(load_mask(path, channel="luminance").values * 255 - pillow_luma).max() <= 1.0


def test_mask_alpha_on_a_file_without_alpha_says_what_to_use(tmp_path: Path) -> None:
    path = save_image(random_image(opaque=True), tmp_path / "x.png")
    assert load_mask(path).values.shape == (12, 17)  # auto falls back to luminance
    with pytest.raises(MediaError, match=r"x\.png: has no alpha channel to use as a mask; use channel='luminance'"):
        load_mask(path, channel="alpha")


def test_16_bit_mask_keeps_16_bits(tmp_path: Path) -> None:
    gray = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)
    path = _pil_file(tmp_path, "g16.png", PIL.Image.fromarray(gray))
    np.testing.assert_array_equal(np.rint(load_mask(path).values * 65535), gray)


# ----------------------------------------------------------------------------- atomic writes


def test_a_failing_encoder_leaves_no_file_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise MediaError("encoder exploded")

    monkeypatch.setattr(image_io, "_encode_png", broken)
    with pytest.raises(MediaError, match="encoder exploded"):
        save_image(random_image(), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_write_keeps_the_old_file_and_removes_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.png"
    save_image(random_image(), target)
    before = target.read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(MediaError, match=r"x\.png: cannot write the file \(No space left on device\)"):
        save_image(random_image(), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_saved_files_get_normal_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = save_image(random_image(), tmp_path / "x.png")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_saving_into_a_missing_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="the directory .*nope does not exist; create it first"):
        save_image(random_image(), tmp_path / "nope" / "x.png")


# ----------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"gone\.png: file not found; check the path"):
        load_image(tmp_path / "gone.png")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(MediaError, match=r"e\.png: file is empty \(0 bytes\)"):
        load_image(tmp_path / "e.png")


@pytest.mark.parametrize(
    "name,data,what",
    [
        ("noise.png", bytes(RNG.integers(0, 256, 512, dtype=np.uint8)), "not an image strata can read"),
        ("notes.txt", b"shopping list: eggs\n", "not an image strata can read"),
        ("anim.gif", b"GIF89a" + bytes(40), "a GIF image"),
        ("pic.bmp", b"BM" + bytes(60), "a BMP image"),
    ],
)
def test_unsupported_contents_name_the_supported_formats(tmp_path: Path, name: str, data: bytes, what: str) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(MediaError, match=rf"{name}: {what}.*supported formats are PNG, JPEG, WebP and TIFF"):
        load_image(tmp_path / name)


def test_truncated_png(tmp_path: Path) -> None:
    data = encode_image(random_image(64, 64), "PNG")
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"t\.png: the PNG pixel data is corrupt or truncated .*re-export"):
        load_image(tmp_path / "t.png")


def test_truncated_16_bit_png(tmp_path: Path) -> None:
    data = encode_image(random_image(64, 64), "PNG", bit_depth=16)
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"t\.png: the 16-bit PNG pixel data is corrupt, truncated"):
        load_image(tmp_path / "t.png")


def test_corrupt_jpeg_header(tmp_path: Path) -> None:
    data = bytearray(encode_image(random_image(32, 32, opaque=True), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 2 : sof + 12] = b"\x00" * 10  # zero the frame header: no size, no components
    (tmp_path / "c.jpg").write_bytes(bytes(data))
    with pytest.raises(MediaError, match=r"c\.jpg: the JPEG (header|pixel data) is corrupt"):
        load_image(tmp_path / "c.jpg")


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = encode_image(random_image(64, 64, opaque=True), "JPEG")
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"t\.jpg: the JPEG pixel data is corrupt or truncated"):
        load_image(tmp_path / "t.jpg")


def test_corrupt_png_header(tmp_path: Path) -> None:
    data = bytearray(png_bytes(4, 4))
    data[29] ^= 0xFF  # break the IHDR CRC
    (tmp_path / "c.png").write_bytes(bytes(data))
    with pytest.raises(MediaError, match=r"c\.png: the PNG header is corrupt or truncated"):
        load_image(tmp_path / "c.png")


def test_zero_size_image(tmp_path: Path) -> None:
    (tmp_path / "z.png").write_bytes(png_bytes(0, 5))
    with pytest.raises(MediaError, match=r"z\.png: image has zero size \(0×5\)"):
        load_image(tmp_path / "z.png")


def test_decompression_bomb_is_refused_from_the_header_without_allocating(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(png_bytes(100_000, 100_000))  # 10 gigapixels in 57 bytes
    tracemalloc.start()
    try:
        with pytest.raises(MediaError, match=r"bomb\.png: image is 100000×100000 = 10,000,000,000 pixels, over the limit of 67,108,864.*max_pixels=.*STRATA_MAX_PIXELS"):
            load_image(tmp_path / "bomb.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # the 10-gigapixel buffer (160 GB as float32 RGBA) was never allocated
    assert probe_image(tmp_path / "bomb.png").pixels == 10**10  # the header is still describable


def test_pixel_limit_by_argument_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_image(random_image(10, 10), tmp_path / "x.png")
    with pytest.raises(MediaError, match="over the limit of 99"):
        load_image(path, max_pixels=99)
    assert load_image(path, max_pixels=100).size == (10, 10)
    monkeypatch.setenv("STRATA_MAX_PIXELS", "50")
    with pytest.raises(MediaError, match="over the limit of 50"):
        load_mask(path)
    assert load_image(path, max_pixels=100).size == (10, 10)  # the argument wins
    monkeypatch.setenv("STRATA_MAX_PIXELS", "lots")
    with pytest.raises(MediaError, match="STRATA_MAX_PIXELS='lots' is not a positive whole number"):
        load_image(path)


def test_a_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="is a directory or special file"):
        load_image(tmp_path)


def test_floating_point_tiff_is_refused_with_the_fix(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(MediaError, match=r"f\.tif: floating-point pixels are not supported; save the image with 8 or 16 bits"):
        load_image(tmp_path / "f.tif")


def test_webp_bomb_is_refused_as_too_large(tmp_path: Path) -> None:
    data = bytearray(encode_image(Image.solid(4, 4, (1.0, 0.0, 0.0, 1.0)), "WEBP", lossless=True))
    header = data.index(b"VP8L") + 9  # after the chunk header and the 0x2f signature byte
    bits = int.from_bytes(data[header : header + 4], "little") & ~((1 << 28) - 1)
    data[header : header + 4] = (bits | 16382 | 16382 << 14).to_bytes(4, "little")  # claim 16383×16383
    (tmp_path / "bomb.webp").write_bytes(bytes(data))
    with pytest.raises(MediaError, match=r"bomb\.webp: image is (16383×16383|too large to open safely)"):
        load_image(tmp_path / "bomb.webp")


def _reference_integers(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """The quantization formula, written the plain numpy way (the encoder's reference)."""
    top = 65535.0 if bit_depth == 16 else 255.0
    a = np.rint(np.clip(pixels, 0.0, 1.0) * top).astype(np.uint16 if bit_depth == 16 else np.uint8)
    return a[:, :, :3] if np.all(a[:, :, 3] == top) else a


def _decoded_by_libpng(png: bytes) -> np.ndarray:
    """The PNG decoded by libpng (OpenCV's reader: it keeps 16-bit colour), as RGB(A)."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgr is not None, "libpng refused the PNG"
    return bgr[:, :, [2, 1, 0, 3][: bgr.shape[2]]]


def _hard_pixels(opaque: bool) -> np.ndarray:
    """Values that catch a different rounding or clipping: exact half steps of 1/255 and
    1/65535 and their float32 neighbours, out-of-range values, ±0, and random ones."""
    a = RNG.uniform(-0.3, 1.3, (37, 41, 4)).astype(np.float32)
    steps = np.arange(256, dtype=np.float32)
    halves = ((steps + 0.5) / 255).astype(np.float32)
    specials = np.concatenate([halves, np.nextafter(halves, 2), np.nextafter(halves, -2), steps / 255,
                               ((np.arange(300, dtype=np.float32) * 211 + 0.5) / 65535).astype(np.float32),
                               np.float32([0.0, -0.0, 1.0, np.nextafter(np.float32(1), 2), -1e-9, 1e9])])
    a.reshape(-1)[: specials.size] = specials
    if opaque:
        a[:, :, 3] = 1.0
    return a


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("opaque", [True, False])
@pytest.mark.parametrize("strip_bytes", [1 << 22, 300])  # one deflate call, or a few rows per call
def test_png_decodes_to_the_reference_integers(bit_depth: int, opaque: bool, strip_bytes: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_io, "_PNG_STRIP_BYTES", strip_bytes)
    pixels = _hard_pixels(opaque)
    png = encode_image(Image(pixels), "PNG", bit_depth=bit_depth)
    expected = _reference_integers(pixels, bit_depth)
    np.testing.assert_array_equal(_decoded_by_libpng(png), expected)
    if bit_depth == 8:  # a second, independent decoder
        np.testing.assert_array_equal(np.asarray(PIL.Image.open(io.BytesIO(png))), expected)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "TIFF"])
def test_other_formats_get_the_reference_integers(fmt: str) -> None:
    pixels = _hard_pixels(opaque=True)
    expected = _reference_integers(pixels, 8)
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    if fmt == "JPEG":  # lossy: compare with Pillow's encoding of the reference integers
        buf = io.BytesIO()
        PIL.Image.fromarray(expected).save(buf, "JPEG", quality=95, subsampling=0)
        assert encode_image(Image(pixels), fmt) == buf.getvalue()
    else:
        decoded = np.asarray(PIL.Image.open(io.BytesIO(encode_image(Image(pixels), fmt, **kwargs))))
        np.testing.assert_array_equal(decoded, expected)


def test_quantization_keeps_alpha_when_one_pixel_rounds_below_opaque() -> None:
    def channels(alpha: float) -> int:
        pixels = np.ones((4, 4, 4), np.float32)
        pixels[2, 3, 3] = alpha
        return np.asarray(PIL.Image.open(io.BytesIO(encode_image(Image(pixels), "PNG")))).shape[2]

    assert channels(254.49 / 255) == 4  # rounds to 254: the file must keep its alpha
    assert channels(254.51 / 255) == 3  # rounds to 255: opaque, written as RGB
