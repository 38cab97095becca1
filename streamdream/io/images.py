"""Still images in and out, always as H x W x 3 uint8 RGB arrays (plus optional alpha) at the edges.

Every model and front end works on that one pixel format, so this module is the single place
where file formats, EXIF rotation, palettes, 16-bit and float data, and transparency are turned
into it and back. Files are decoded completely at load time, so a truncated or hostile file fails
here with a one-line message rather than halfway through a render.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import StreamdreamError
from ..settings import MAX_PIXELS, OutputSettings
from .paths import atomic_output, check_input_file, check_output_path, is_disk_full

log = logging.getLogger(__name__)

_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_FORMATS)
# Only these decoders are tried, so an odd file never reaches a plugin such as EPS (Ghostscript).
_DECODERS = sorted(set(_FORMATS.values()))
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
_LOSSY_FORMATS = {"JPEG", "WEBP"}
# What Pillow raises when a file it has identified turns out to be cut short or malformed.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)

# Pillow's default (~89 Mpx) would refuse large panoramas; MAX_PIXELS (250 Mpx) still stops decompression bombs.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass
class Picture:
    """Decoded pixels, with alpha kept apart so models only ever see RGB."""

    rgb: np.ndarray  # H x W x 3 uint8 RGB
    alpha: np.ndarray | None  # H x W uint8, or None when the image has no transparency


def load_image(path: str | os.PathLike) -> Picture:
    """Decode an image file fully, upright per its EXIF orientation; raise StreamdreamError if unusable."""
    src = check_input_file(path, "image")
    with _open(src, str(src), MAX_PIXELS) as img:
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            log.warning("%s is animated (%d frames); only its first frame is used (give it as a video to use every frame)", src, frames)
        try:
            img.load()  # Pillow decodes lazily; force it so truncation is caught here.
            ImageOps.exif_transpose(img, in_place=True)
        except _DECODE_ERRORS as exc:
            raise StreamdreamError(f"{src} is truncated or corrupt ({exc})") from exc
        return to_picture(img)


def image_size(image: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) read from the header alone, nothing decoded.

    For a front end that takes smaller pictures than `load_image` (a web app): a file (by path) or
    its bytes that is no picture, or has more than `max_pixels` pixels, is refused with
    `load_image`'s one-line messages before anything is decoded, so a decompression bomb costs a
    few kilobytes of reading.
    """
    if isinstance(image, bytes):
        source, name = io.BytesIO(image), "the picture"
    else:
        source = check_input_file(image, "image")
        name = str(source)
    with _open(source, name, max_pixels) as img:
        return img.size


def _open(src: Path | io.BytesIO, name: str, max_pixels: int) -> Image.Image:
    """`src` opened with its header read and checked (a known format, at most `max_pixels` pixels)
    and nothing decoded yet; `name` says which picture in messages."""
    try:
        with warnings.catch_warnings():
            # The size is checked below against the caller's limit; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(src, formats=_DECODERS)
    except Image.DecompressionBombError as exc:  # Pillow's own stop, at twice MAX_PIXELS: no size to quote
        raise StreamdreamError(f"{name} is larger than the {max_pixels / 1e6:g}-megapixel limit; downscale it first") from exc
    except Image.UnidentifiedImageError as exc:
        # Pillow also lands here for headers that claim a zero width or height.
        raise StreamdreamError(
            f"{name} is not a readable PNG, JPEG, WebP, BMP or TIFF image (unknown format or damaged header)"
        ) from exc
    except OSError as exc:
        raise StreamdreamError(f"cannot read {name}: {exc.strerror or exc}") from exc
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise StreamdreamError(
            f"{name} is {width}x{height} pixels ({width * height / 1e6:.3g} megapixels), larger than the"
            f" {max_pixels / 1e6:g}-megapixel limit; downscale it first"
        )
    return img


def save_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    quality: int = OutputSettings.default("quality"),
    overwrite: bool = False,
) -> Path:
    """Write `rgb` (and `alpha` where the format can hold it) atomically; return the final path.

    The format comes from the extension. `quality` applies to the lossy formats (JPEG, WebP).
    An existing file is replaced only with `overwrite`. JPEG and BMP cannot store alpha, so it is
    dropped there, with a notice, rather than failing a finished render.
    """
    out = Path(path)
    fmt = _output_format(out)
    if not 1 <= quality <= 100:
        raise StreamdreamError(f"quality must be between 1 and 100, got {quality}")
    if alpha is not None and fmt not in _ALPHA_FORMATS and (alpha < 255).any():
        log.warning("%s cannot hold transparency, so it was dropped; save as PNG, WebP or TIFF to keep it", out.name)
    img = _to_pil(rgb, alpha if fmt in _ALPHA_FORMATS else None)
    options = {"quality": quality} if fmt in _LOSSY_FORMATS else {}
    with atomic_output(out, overwrite=overwrite) as pending:
        try:
            img.save(pending.tmp, format=fmt, **options)
        except OSError as exc:
            if is_disk_full(exc):
                raise  # atomic_output words it
            raise StreamdreamError(f"cannot write {out}: {exc.strerror or exc}", exit_code=1) from None
    return out


def check_image_output(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Fail before any work if `path` cannot take an image: unknown extension or unwritable place."""
    out = Path(path)
    _output_format(out)
    return check_output_path(out, overwrite=overwrite)


def _output_format(out: Path) -> str:
    fmt = _FORMATS.get(out.suffix.lower())
    if fmt is None:
        known = ", ".join(SUPPORTED_EXTENSIONS)
        raise StreamdreamError(f"cannot save {out}: unknown extension '{out.suffix}'; use one of {known}")
    return fmt


def resize_picture(picture: Picture, max_side: int) -> Picture:
    """`resize_max_side` for the colour and the alpha of a picture together."""
    alpha = None
    if picture.alpha is not None:
        size = _scaled_size(*picture.alpha.shape[:2], max_side)
        alpha = np.asarray(Image.fromarray(picture.alpha).resize(size, Image.Resampling.LANCZOS))
    return Picture(resize_max_side(picture.rgb, max_side), alpha)


def _scaled_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(width, height) with the longer side `max_side`, aspect kept, at least 1 px per side."""
    scale = max_side / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_max_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Scale so the longer side is `max_side` (up or down), keeping the aspect ratio.

    Pillow's Lanczos widens its kernel when shrinking, so downscales are antialiased (area-like).
    """
    _check_rgb(rgb)
    if max_side < 1:
        raise StreamdreamError(f"image size must be at least 1 pixel, got {max_side}")
    return np.asarray(Image.fromarray(rgb).resize(_scaled_size(*rgb.shape[:2], max_side), Image.Resampling.LANCZOS))


def to_picture(image: np.ndarray | Image.Image) -> Picture:
    """Normalise an API caller's image to a Picture.

    Accepts a PIL image of any mode, or an array that is H x W gray, H x W x 1, H x W x 3 RGB or
    H x W x 4 RGBA, as uint8, uint16 (full 16-bit range) or float in [0, 1].
    """
    if isinstance(image, Image.Image):
        return _pil_to_picture(image)
    if not isinstance(image, np.ndarray):
        raise StreamdreamError(f"expected a numpy array or PIL image, got {type(image).__name__}")
    pixels = _to_uint8(image)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        return Picture(np.repeat(pixels[..., None], 3, axis=2), None)
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        alpha = pixels[..., 3].copy() if pixels.shape[2] == 4 else None
        return Picture(pixels[..., :3].copy(), alpha)
    raise StreamdreamError(f"expected an H x W, H x W x 3 or H x W x 4 image, got shape {image.shape}")


def from_rgb_like(
    rgb: np.ndarray, like: np.ndarray | Image.Image, alpha: np.ndarray | None = None
) -> np.ndarray | Image.Image:
    """Return a result in the kind of object the caller passed in: PIL in, PIL out; else uint8 array.

    With `alpha` the result is RGBA (H x W x 4), otherwise RGB (H x W x 3).
    """
    if isinstance(like, Image.Image):
        return _to_pil(rgb, alpha)
    _check_rgb(rgb, alpha)
    return rgb if alpha is None else np.dstack([rgb, alpha])


def _pil_to_picture(img: Image.Image) -> Picture:
    """Convert via Pillow modes, except high-bit-depth ones, which Pillow would clip to white."""
    if img.mode.startswith("I;16"):
        return to_picture(np.asarray(img).astype(np.uint16))
    if img.mode == "I":  # 32-bit integers: Pillow's mode for 16-bit data from some decoders
        return to_picture(np.clip(np.asarray(img), 0, 65535).astype(np.uint16))
    if img.mode == "F":
        return to_picture(np.asarray(img))
    try:
        if img.mode in ("RGBA", "RGBa", "LA", "PA") or "transparency" in img.info:
            rgba = np.asarray(img.convert("RGBA"))
            return Picture(np.ascontiguousarray(rgba[..., :3]), rgba[..., 3].copy())
        return Picture(np.asarray(img.convert("RGB")).copy(), None)
    except ValueError as exc:
        raise StreamdreamError(f"cannot convert a {img.mode} image to RGB") from exc


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Map uint8 / uint16 / float [0, 1] samples onto 0..255, rounding rather than truncating."""
    if pixels.size == 0:
        raise StreamdreamError(f"image has zero size (shape {pixels.shape})")
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.floating):
        return np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise StreamdreamError(f"unsupported pixel type {pixels.dtype}; use uint8, uint16 or float in [0, 1]")


def _check_rgb(rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Reject arrays that break the edge convention; these are programming errors, not user ones."""
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
        raise ValueError(f"expected an H x W x 3 uint8 RGB array, got {_describe(rgb)}")
    if alpha is not None and not (
        isinstance(alpha, np.ndarray) and alpha.dtype == np.uint8 and alpha.shape == rgb.shape[:2]
    ):
        raise ValueError(f"expected an H x W uint8 alpha of shape {rgb.shape[:2]}, got {_describe(alpha)}")


def _describe(value: object) -> str:
    return f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__


def _to_pil(rgb: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """Build the RGB or RGBA PIL image that encoders and PIL-facing callers expect."""
    _check_rgb(rgb, alpha)
    if alpha is None:
        return Image.fromarray(rgb)
    return Image.fromarray(np.dstack([rgb, alpha]))
