"""Faithful image decoding with explicit limits.

Every image becomes (H, W, 3) uint8 RGB the same way, whatever its file holds:

* EXIF orientation is applied (a rotated phone/camera JPEG is scored upright);
* 16-bit (and other high-bit-depth integer) images are scaled by the smallest of 10, 12, 14, 16
  or 32 bits that holds their largest value (a 12-bit sensor's 0..4095 fills 0..255);
  float images in [0, 1] are scaled by 255, other float images by their finite min..max;
* grayscale is repeated on three channels; palette, CMYK and YCbCr are converted by Pillow;
  an alpha channel is composited over white;
* the pixel count is checked from the header *before* decoding: more than ``max_pixels`` is
  refused (a decompression bomb never allocates), and so is a side shorter than ``min_side``.

Limits come from ``ImageLimits`` (defaults: 25 megapixels, 32 px; the environment variables
``ZSAD_MAX_PIXELS`` and ``ZSAD_MIN_SIDE`` override them). The 25 MP bound keeps SAM's
full-resolution masks (about one byte per pixel per mask, ~100 masks) within a few GB.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class DatasetError(ValueError):
    """A data set folder or file is not in the expected layout or cannot be read."""


class ImageError(DatasetError):
    """An image file that cannot be used, with the reason."""


@dataclass(frozen=True)
class ImageLimits:
    """Accepted image sizes. ``from_env()`` reads ``ZSAD_MAX_PIXELS`` / ``ZSAD_MIN_SIDE``."""

    max_pixels: int = 25_000_000
    min_side: int = 32

    @classmethod
    def from_env(cls) -> "ImageLimits":
        def read(name: str, default: int) -> int:
            text = os.environ.get(name)
            if text is None:
                return default
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"{name} must be a whole number, got {text!r}") from None
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
            return value
        return cls(read("ZSAD_MAX_PIXELS", cls.max_pixels), read("ZSAD_MIN_SIDE", cls.min_side))


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale a high-bit-depth or float array to uint8 (see the module docstring).

    Example:
        >>> to_uint8(np.array([0, 4095], np.uint16)).tolist()      # 12-bit data
        [0, 255]
        >>> to_uint8(np.array([0, 65535], np.int32)).tolist()
        [0, 255]
        >>> to_uint8(np.array([0.0, 0.5, 1.0], np.float32)).tolist()
        [0, 128, 255]
        >>> to_uint8(np.array([-2.0, 0.0, 2.0])).tolist()          # other floats: min..max
        [0, 128, 255]
    """
    a = np.asarray(values)
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.integer):
        top = int(a.max()) if a.size else 0
        if a.size and int(a.min()) < 0:
            a = a.astype(np.int64) - int(a.min())
            top = int(a.max())
        bits = next((b for b in (8, 10, 12, 14, 16, 32) if top < 2 ** b), 32)
        return np.rint(a.astype(np.float64) * (255.0 / (2 ** bits - 1))).astype(np.uint8)
    f = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (0.0, 1.0) if f.size and f.min() >= 0.0 and f.max() <= 1.0 else (float(f.min()), float(f.max()))
    return np.rint(np.clip((f - lo) / (hi - lo if hi > lo else 1.0), 0, 1) * 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I", "F") or im.mode.startswith("I;"):
        gray = to_uint8(np.asarray(im))
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))


def decode_image(path: str | Path, limits: ImageLimits | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; ``ImageError`` names the file and the reason."""
    p = Path(path)
    limits = limits or ImageLimits.from_env()
    if not p.is_file():
        raise ImageError(f"{p}: image file does not exist" + (" (a dangling link)" if p.is_symlink() else ""))
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                w, h = im.size
                _check_size(p, w, h, limits)
                im.load()
                arr = _to_rgb(ImageOps.exif_transpose(im))
    except Image.DecompressionBombError:
        raise ImageError(f"{p}: its header claims over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, over the "
                         f"limit of {limits.max_pixels / 1e6:g} (a decompression bomb?): refused before decoding"
                         ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{p}: not a readable image ({exc})") from None
    return arr


def _check_size(p: Path, w: int, h: int, limits: ImageLimits) -> None:
    if w * h > limits.max_pixels:
        raise ImageError(f"{p}: {w}x{h} px = {w * h / 1e6:.1f} megapixels is over the limit of "
                         f"{limits.max_pixels / 1e6:g} (refused before decoding; raise ZSAD_MAX_PIXELS to allow it)")
    if min(w, h) < limits.min_side:
        raise ImageError(f"{p}: {w}x{h} px; each side must be at least {limits.min_side} px (ZSAD_MIN_SIDE)")


FORMAT_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


def sniff_image(data: bytes, name: str, limits: ImageLimits | None = None) -> str:
    """The file suffix of an upload's image format, read from its bytes (never from ``name``),
    after checking the header's size against ``limits``: nothing is decoded here, so a
    decompression bomb is refused before any pixel is allocated. ``ImageError`` says why not.

    Example:
        >>> import io
        >>> buf = io.BytesIO(); Image.new("RGB", (40, 40)).save(buf, "PNG")
        >>> sniff_image(buf.getvalue(), "photo.jpg")
        '.png'
        >>> sniff_image(b"not an image", "a.png")
        Traceback (most recent call last):
        ...
        zsad.datasets.decode.ImageError: a.png: not an image (its bytes are no PNG, JPEG, BMP, TIFF or WEBP)
    """
    import io
    limits = limits or ImageLimits.from_env()
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=tuple(FORMAT_SUFFIXES)) as im:
                fmt, (w, h) = im.format, im.size
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: its header claims over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, over the "
                         f"limit of {limits.max_pixels / 1e6:g} (a decompression bomb?): refused before decoding"
                         ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageError(f"{name}: not an image (its bytes are no {', '.join(list(FORMAT_SUFFIXES)[:-1])} or "
                         f"{list(FORMAT_SUFFIXES)[-1]})") from None
    _check_size(Path(name), w, h, limits)
    return FORMAT_SUFFIXES[fmt]


# EXIF orientation -> the transposition that makes the stored pixels upright (as ImageOps.exif_transpose)
EXIF_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def exif_orientation(path: str | Path | None) -> int:
    """The EXIF orientation (1..8) of an image file; 1 (upright) where it has none or cannot be read."""
    try:
        with Image.open(path) as im:
            value = int(im.getexif().get(0x0112, 1))
    except (OSError, ValueError, TypeError, UnidentifiedImageError, SyntaxError):
        return 1
    return value if value in EXIF_UPRIGHT else 1


def upright(mask_hw: np.ndarray, orientation: int) -> np.ndarray:
    """A mask drawn on an image's stored pixels, turned as its image is decoded (EXIF
    ``orientation``), so that image and mask share one pixel grid.

    Example:
        >>> upright(np.array([[1, 0, 0], [0, 0, 0]], bool), 6).astype(int).tolist()  # 90 degrees clockwise
        [[0, 1], [0, 0], [0, 0]]
    """
    if orientation not in EXIF_UPRIGHT:
        return mask_hw
    return np.asarray(Image.fromarray(np.asarray(mask_hw, np.uint8) * 255).transpose(EXIF_UPRIGHT[orientation])) > 0
