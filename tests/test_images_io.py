"""Tests for streamdream.io.images: formats, orientation, alpha, bit depths, and refusing bad files.

Conversions that go wrong quietly (16-bit clipped to white, alpha lost, a sideways phone photo)
still produce an image, so the tests check pixel values and orientation, not only shapes. Bad
inputs must fail as StreamdreamError with one line, and a failed save must leave nothing behind.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamdream.errors import StreamdreamError
from streamdream.io.images import (
    MAX_PIXELS,
    SUPPORTED_EXTENSIONS,
    Picture,
    from_rgb_like,
    load_image,
    resize_max_side,
    save_image,
    to_picture,
)

H, W = 24, 32  # non-square so swapped axes show up


def _photo(height: int = H, width: int = W) -> np.ndarray:
    """Smooth colour gradients: realistic for lossy codecs, distinct in every pixel."""
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 4 % 256]).astype(np.uint8)


def _alpha(height: int = H, width: int = W) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return ((x * 8 + y) % 256).astype(np.uint8)


def _png_bytes(width: int, height: int, *, bit_depth: int = 8, color_type: int = 2, rows: bytes = b"") -> bytes:
    """A PNG built by hand, for headers and bit depths that Pillow will not write."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _one_line_error(path: Path) -> str:
    """Load `path` expecting failure; return the message with the path blanked out.

    Blanking matters: tmp_path contains the test's name, which could otherwise satisfy the check.
    """
    with pytest.raises(StreamdreamError) as info:
        load_image(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message.replace(str(path), "<path>")


# --- round trips -----------------------------------------------------------------------------


def test_supported_extensions():
    assert SUPPORTED_EXTENSIONS == (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff", ".PNG"])
def test_lossless_round_trip_is_exact(tmp_path, ext):
    rgb = _photo()
    out = save_image(tmp_path / f"a{ext}", rgb)
    assert out == tmp_path / f"a{ext}" and out.is_file()
    picture = load_image(out)
    assert isinstance(picture, Picture)
    assert picture.rgb.dtype == np.uint8 and picture.rgb.shape == (H, W, 3)
    np.testing.assert_array_equal(picture.rgb, rgb)
    assert picture.alpha is None


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_lossy_round_trip_is_close(tmp_path, ext):
    rgb = _photo()
    picture = load_image(save_image(tmp_path / f"a{ext}", rgb))
    assert picture.rgb.shape == (H, W, 3)
    assert np.abs(picture.rgb.astype(int) - rgb).mean() < 3
    assert picture.alpha is None


def test_files_really_are_in_the_format_of_their_extension(tmp_path):
    expected = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF"}
    for ext, fmt in expected.items():
        with Image.open(save_image(tmp_path / f"a{ext}", _photo())) as img:
            assert img.format == fmt


def test_jpeg_quality_is_applied(tmp_path):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    low = save_image(tmp_path / "low.jpg", noisy, quality=10)
    high = save_image(tmp_path / "high.jpg", noisy, quality=95)
    assert low.stat().st_size < high.stat().st_size / 2
    with pytest.raises(StreamdreamError, match="quality"):
        save_image(tmp_path / "bad.jpg", noisy, quality=0)


def test_overwrite_false_keeps_existing_file(tmp_path):
    out = save_image(tmp_path / "a.png", _photo())
    before = out.read_bytes()
    with pytest.raises(StreamdreamError, match="exists"):
        save_image(out, np.zeros((4, 4, 3), np.uint8), overwrite=False)
    assert out.read_bytes() == before
    save_image(out, np.zeros((4, 4, 3), np.uint8), overwrite=True)
    assert load_image(out).rgb.shape == (4, 4, 3)


# --- alpha -------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_alpha_is_kept_exactly_by_lossless_formats(tmp_path, ext):
    rgb, alpha = _photo(), _alpha()
    picture = load_image(save_image(tmp_path / f"a{ext}", rgb, alpha))
    np.testing.assert_array_equal(picture.rgb, rgb)
    np.testing.assert_array_equal(picture.alpha, alpha)


def test_alpha_is_kept_by_webp(tmp_path):
    rgb, alpha = _photo(), _alpha()
    picture = load_image(save_image(tmp_path / "a.webp", rgb, alpha))
    assert picture.alpha is not None
    assert np.abs(picture.alpha.astype(int) - alpha).max() <= 2


@pytest.mark.parametrize("ext", [".jpg", ".bmp"])
def test_alpha_is_dropped_without_error_where_unsupported(tmp_path, ext):
    rgb = _photo()
    out = save_image(tmp_path / f"a{ext}", rgb, _alpha())
    with Image.open(out) as img:
        assert img.mode == "RGB"
    picture = load_image(out)
    assert picture.alpha is None
    assert np.abs(picture.rgb.astype(int) - rgb).mean() < 3


# --- decoding of other layouts ------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = (255, 0, 0)  # left half red
    stored[:, 16:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)

    rgb = load_image(path).rgb
    assert rgb.shape == (32, 16, 3)
    # Turned clockwise, the left (red) half becomes the top.
    assert np.abs(rgb.astype(int) - np.rot90(stored, k=-1)).mean() < 4
    assert rgb[2, 8, 0] > 200 and rgb[2, 8, 2] < 50
    assert rgb[-3, 8, 2] > 200 and rgb[-3, 8, 0] < 50


def test_grayscale_becomes_equal_channels(tmp_path):
    gray = _photo()[..., 0]
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    picture = load_image(path)
    assert picture.rgb.shape == (H, W, 3)
    for channel in range(3):
        np.testing.assert_array_equal(picture.rgb[..., channel], gray)


def test_gray_with_alpha_keeps_alpha(tmp_path):
    path = tmp_path / "la.png"
    Image.fromarray(np.dstack([np.full((4, 4), 77, np.uint8), _alpha(4, 4)])).save(path)
    picture = load_image(path)
    np.testing.assert_array_equal(picture.rgb, np.full((4, 4, 3), 77, np.uint8))
    np.testing.assert_array_equal(picture.alpha, _alpha(4, 4))


def test_palette_with_transparency(tmp_path):
    img = Image.fromarray(np.array([[0, 1], [1, 2]], np.uint8), mode="L").convert("P")
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    path = tmp_path / "palette.png"
    img.save(path, transparency=1)
    picture = load_image(path)
    np.testing.assert_array_equal(picture.rgb[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(picture.rgb[1, 1], (0, 0, 255))
    np.testing.assert_array_equal(picture.alpha, [[255, 0], [0, 255]])


def test_palette_without_transparency_has_no_alpha(tmp_path):
    path = tmp_path / "palette.bmp"
    Image.fromarray(_photo()).convert("P").save(path)
    picture = load_image(path)
    assert picture.alpha is None and picture.rgb.shape == (H, W, 3)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_gray_is_scaled_not_clipped(tmp_path, ext):
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)
    samples = np.array([0, 257, 128 * 257, 65535, 65535 // 2], np.uint16)
    image16 = np.vstack([np.tile(ramp, (3, 1)), np.pad(samples, (0, 64 - samples.size))[None]])
    path = tmp_path / f"deep{ext}"
    Image.fromarray(image16).save(path)  # Pillow writes uint16 as a 16-bit grayscale file

    rgb = load_image(path).rgb
    np.testing.assert_array_equal(rgb[-1, :5, 0], [0, 1, 128, 255, 127])
    np.testing.assert_array_equal(rgb[0, :, 0], np.round(ramp / 257).astype(np.uint8))
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    assert np.all(np.diff(rgb[0, :, 0].astype(int)) > 0)  # still a ramp, not saturated


def test_16bit_rgb_png_is_scaled(tmp_path):
    values = np.array([[[0, 32896, 65535], [65535, 257, 12850]]], np.uint16)  # 1 x 2 x 3
    rows = b"\x00" + values.astype(">u2").tobytes()
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png_bytes(2, 1, bit_depth=16, color_type=2, rows=rows))
    rgb = load_image(path).rgb
    assert rgb.shape == (1, 2, 3)
    assert np.abs(rgb.astype(int) - np.round(values / 257)).max() <= 1


def test_cmyk_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:, 8:] = (0, 255, 255, 0)  # red on the right, white (no ink) on the left
    Image.fromarray(cmyk, mode="CMYK").save(path, quality=95)
    rgb = load_image(path).rgb.astype(int)
    assert np.abs(rgb[8, 2] - (255, 255, 255)).max() < 8
    assert np.abs(rgb[8, 13] - (255, 0, 0)).max() < 8


def test_float_tiff_is_read_as_unit_range(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0, 2.0]], np.float32)).save(path)
    np.testing.assert_array_equal(load_image(path).rgb[0, :, 1], [0, 128, 255, 255])


# --- API conversions ----------------------------------------------------------------------------


def test_to_picture_numpy_layouts_and_dtypes():
    rgb = _photo()
    np.testing.assert_array_equal(to_picture(rgb).rgb, rgb)
    assert to_picture(rgb).alpha is None

    rgba = to_picture(np.dstack([rgb, _alpha()]))
    np.testing.assert_array_equal(rgba.rgb, rgb)
    np.testing.assert_array_equal(rgba.alpha, _alpha())

    gray = rgb[..., 1]
    for layout in (gray, gray[..., None]):
        np.testing.assert_array_equal(to_picture(layout).rgb, np.dstack([gray] * 3))

    np.testing.assert_array_equal(to_picture(rgb.astype(np.uint16) * 257).rgb, rgb)
    np.testing.assert_array_equal(to_picture(rgb / 255.0).rgb, rgb)
    np.testing.assert_array_equal(to_picture((rgb / 255.0).astype(np.float32)).rgb, rgb)
    np.testing.assert_array_equal(to_picture(np.array([[-0.5, 0.5, 1.5]])).rgb[0, :, 0], [0, 128, 255])


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4), np.int64), np.zeros((0, 4, 3), np.uint8), [[0, 1]]],
    ids=["two-channels", "int64", "empty", "list"],
)
def test_to_picture_rejects_bad_input(bad):
    with pytest.raises(StreamdreamError):
        to_picture(bad)


def test_pil_round_trip_keeps_type_and_mode():
    rgb, alpha = _photo(), _alpha()
    pil_rgb = Image.fromarray(rgb)
    back = from_rgb_like(to_picture(pil_rgb).rgb, pil_rgb)
    assert isinstance(back, Image.Image) and back.mode == "RGB" and back.size == (W, H)
    np.testing.assert_array_equal(np.asarray(back), rgb)

    pil_rgba = Image.fromarray(np.dstack([rgb, alpha]))
    picture = to_picture(pil_rgba)
    np.testing.assert_array_equal(picture.alpha, alpha)
    back = from_rgb_like(picture.rgb, pil_rgba, picture.alpha)
    assert isinstance(back, Image.Image) and back.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(back), np.dstack([rgb, alpha]))


def test_pil_16bit_and_gray_inputs():
    ramp = np.arange(0, 65536, 4369, dtype=np.uint16)[None]  # 0 .. 65535 in 16 steps
    picture = to_picture(Image.fromarray(ramp))
    np.testing.assert_array_equal(picture.rgb[0, :, 0], np.round(ramp[0] / 257))
    gray = to_picture(Image.fromarray(np.array([[0, 100, 255]], np.uint8)))
    np.testing.assert_array_equal(gray.rgb[0], [[0, 0, 0], [100, 100, 100], [255, 255, 255]])


def test_numpy_round_trip_returns_uint8_arrays():
    rgb, alpha = _photo(), _alpha()
    like = rgb / 255.0
    back = from_rgb_like(to_picture(like).rgb, like)
    assert isinstance(back, np.ndarray) and back.dtype == np.uint8 and back.shape == (H, W, 3)
    np.testing.assert_array_equal(back, rgb)

    picture = to_picture(np.dstack([rgb, alpha]))
    back = from_rgb_like(picture.rgb, np.dstack([rgb, alpha]), picture.alpha)
    assert back.shape == (H, W, 4)
    np.testing.assert_array_equal(back, np.dstack([rgb, alpha]))


def test_from_rgb_like_rejects_mismatched_alpha():
    with pytest.raises(ValueError):
        from_rgb_like(_photo(), _photo(), np.zeros((3, 3), np.uint8))


# --- resizing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "max_side", "expected"),
    [
        ((100, 50), 20, (20, 10)),  # portrait, down
        ((50, 100), 20, (10, 20)),  # landscape, down
        ((10, 5), 40, (40, 20)),  # up
        ((30, 30), 30, (30, 30)),  # unchanged
        ((1000, 2), 10, (10, 1)),  # the short side never reaches zero
    ],
)
def test_resize_max_side_shapes(shape, max_side, expected):
    out = resize_max_side(np.zeros((*shape, 3), np.uint8), max_side)
    assert out.shape == (*expected, 3) and out.dtype == np.uint8


def test_resize_is_filtered_not_point_sampled():
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes alias to solid black or white if point-sampled
    small = resize_max_side(stripes, 16)
    assert np.abs(small.astype(int) - 127).max() < 20
    flat = np.full((20, 30, 3), 200, np.uint8)
    np.testing.assert_array_equal(resize_max_side(flat, 45), np.full((30, 45, 3), 200, np.uint8))


def test_resize_rejects_nonpositive_size():
    with pytest.raises(StreamdreamError):
        resize_max_side(_photo(), 0)


# --- bad files ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    assert _one_line_error(tmp_path / "nope.png") == "no such file: <path>"


def test_directory(tmp_path):
    assert "folder" in _one_line_error(tmp_path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()
    assert "empty" in _one_line_error(path)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("just some text, not pixels\n" * 20)
    assert "not a readable" in _one_line_error(path)


def test_unsupported_decoders_are_not_tried(tmp_path):
    path = tmp_path / "anim.gif"
    Image.fromarray(_photo()).save(path)
    assert "not a readable" in _one_line_error(path)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp"])
def test_truncated_image(tmp_path, ext):
    rng = np.random.default_rng(1)
    full = save_image(tmp_path / f"full{ext}", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).read_bytes()
    path = tmp_path / f"cut{ext}"
    path.write_bytes(full[: len(full) // 2])
    _one_line_error(path)


def test_truncated_image_is_reported_as_truncated(tmp_path):
    full = save_image(tmp_path / "full.jpg", _photo(64, 64)).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(full[: len(full) // 2])
    assert "truncated" in _one_line_error(path)


@pytest.mark.parametrize(("width", "height"), [(0, 8), (8, 0)])
def test_zero_size_image(tmp_path, width, height):
    path = tmp_path / "zero.png"
    path.write_bytes(_png_bytes(width, height))
    _one_line_error(path)


@pytest.mark.parametrize("side", [20_000, 40_000], ids=["over-limit", "over-twice-limit"])
def test_decompression_bomb(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bytes(side, side))  # the header alone claims the size
    message = _one_line_error(path)
    assert f"{MAX_PIXELS // 1_000_000}-megapixel limit" in message


def test_limit_is_generous(tmp_path):
    # 225 Mpx is over Pillow's default limit but under ours: it gets past the size check and then
    # fails only because this hand-made file has no pixel data.
    path = tmp_path / "huge.png"
    path.write_bytes(_png_bytes(15_000, 15_000))
    message = _one_line_error(path)
    assert "megapixel" not in message and "truncated or corrupt" in message


def test_large_photo_loads(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (6000, 4000), (10, 200, 30)).save(path)
    picture = load_image(path)
    assert picture.rgb.shape == (4000, 6000, 3)
    assert np.abs(picture.rgb[2000, 3000].astype(int) - (10, 200, 30)).max() < 4


# --- failed saves -------------------------------------------------------------------------------


def test_unknown_extension_lists_supported_ones(tmp_path):
    with pytest.raises(StreamdreamError) as info:
        save_image(tmp_path / "out.gif", _photo())
    assert all(ext in str(info.value) for ext in SUPPORTED_EXTENSIONS)
    with pytest.raises(StreamdreamError):
        save_image(tmp_path / "no_extension", _photo())
    assert list(tmp_path.iterdir()) == []


def test_missing_folder(tmp_path):
    with pytest.raises(StreamdreamError, match="does not exist"):
        save_image(tmp_path / "missing" / "out.png", _photo())
    assert list(tmp_path.iterdir()) == []


def test_output_is_a_directory(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(StreamdreamError, match="directory"):
        save_image(tmp_path / "out.png", _photo())


def test_failed_encode_leaves_no_file(tmp_path, monkeypatch):
    def half_write_then_fail(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", half_write_then_fail)
    with pytest.raises(StreamdreamError, match="disk full"):
        save_image(tmp_path / "out.png", _photo())
    assert list(tmp_path.iterdir()) == []


def test_bad_arrays_are_programming_errors(tmp_path):
    with pytest.raises(ValueError):
        save_image(tmp_path / "out.png", _photo().astype(np.float32))
    with pytest.raises(ValueError):
        save_image(tmp_path / "out.png", _photo(), np.zeros((2, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []
