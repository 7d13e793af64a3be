"""A corpus of awkward inputs for an inspection folder: what a line's cameras and people produce.

``write_corpus(root)`` writes it and returns what each file must give: ``"scored"``, ``"error"``
(with the words its message must contain) or ``"skipped"`` (with the reason's words). Used by
``tests/test_bad_inputs.py``; run ``python tests/bad_inputs.py DIR`` to write it for a manual try.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (64, 48)  # W, H: above the default 32 px minimum side


def _rgb(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
    img[10:30, 15:45] = rng.integers(150, 255, 3)
    return img


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels and that holds no pixel data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_corpus(root: str | Path) -> dict[str, tuple[str, str]]:
    """Write the corpus under ``root``; returns ``{relative path: (outcome, words)}``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, tuple[str, str]] = {}

    def put(rel: str, data: bytes, outcome: str, words: str = "") -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        expect[rel] = (outcome, words)

    rgb = Image.fromarray(_rgb(0))
    # -- good: every one of these must be scored
    put("plain.png", _bytes(rgb, "PNG"), "scored")
    put("nested/a/b/deep.png", _bytes(Image.fromarray(_rgb(1)), "PNG"), "scored")
    put("gray16.png", _bytes(Image.fromarray((np.arange(SIZE[0] * SIZE[1]).reshape(SIZE[1], SIZE[0]) % 4096)
                                             .astype(np.uint16)), "PNG"), "scored")
    put("gray8.png", _bytes(rgb.convert("L"), "PNG"), "scored")
    put("palette.png", _bytes(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG"), "scored")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(_rgb(0)[..., 0] > 100, 255, 0).astype(np.uint8)))
    put("alpha.png", _bytes(rgba, "PNG"), "scored")
    put("cmyk.jpg", _bytes(rgb.convert("CMYK"), "JPEG"), "scored")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    put("rotated.jpg", _bytes(rgb, "JPEG", exif=exif.tobytes()), "scored")
    put("one_colour.png", _bytes(Image.new("RGB", SIZE, (128, 128, 128)), "PNG"), "scored")
    put("float32.tif", _bytes(Image.fromarray(np.linspace(0, 3.5, SIZE[0] * SIZE[1], dtype=np.float32)
                                              .reshape(SIZE[1], SIZE[0]), mode="F"), "TIFF"), "scored")
    put("b c.png", _bytes(Image.fromarray(_rgb(2)), "PNG"), "scored")
    put("b_c.png", _bytes(Image.fromarray(_rgb(3)), "PNG"), "scored")
    put("a.png", _bytes(Image.fromarray(_rgb(4)), "PNG"), "scored")
    put("a.jpg", _bytes(Image.fromarray(_rgb(5)), "JPEG"), "scored")
    put("ü.png", _bytes(Image.fromarray(_rgb(6)), "PNG"), "scored")
    put("日本.png", _bytes(Image.fromarray(_rgb(7)), "PNG"), "scored")
    put("UPPER.PNG", _bytes(Image.fromarray(_rgb(8)), "PNG"), "scored")
    put("mixed.Jpeg", _bytes(Image.fromarray(_rgb(9)), "JPEG"), "scored")
    # -- bad: each must be named with its own reason, and the rest still scored
    put("empty.png", b"", "error", "empty file (0 bytes)")
    full_png, full_jpg = _bytes(rgb, "PNG"), _bytes(rgb, "JPEG")
    put("truncated.png", full_png[: len(full_png) // 2], "error", "not a readable image")
    put("truncated.jpg", full_jpg[: len(full_jpg) // 2], "error", "not a readable image")
    put("text.png", b"this is not an image, just text", "error", "not a readable image")
    put("tiny_1x1.png", _bytes(Image.new("RGB", (1, 1)), "PNG"), "error", "each side must be at least")
    put("thin_1x5000.png", _bytes(Image.new("RGB", (1, 5000)), "PNG"), "error", "each side must be at least")
    put("bomb.png", _png_header_only(20000, 20000), "error", "refused before decoding")
    put("big_header.png", _png_header_only(8000, 4000), "error", "32.0 megapixels is over the limit of 25")
    # -- skipped: reported, not scored, not an error
    put("._plain.png", b"\x00\x05\x16\x07 resource fork", "skipped", "hidden file")
    put(".hidden.png", _bytes(rgb, "PNG"), "skipped", "hidden file")
    put("anim.gif", _bytes(rgb, "GIF"), "skipped", "not an image file name")
    put("notes.txt", b"shift log", "skipped", "not an image file name")
    (root / "gone.png").symlink_to(root / "deleted-target.png")
    expect["gone.png"] = ("skipped", "dangling link")
    return expect


if __name__ == "__main__":
    out = write_corpus(sys.argv[1] if len(sys.argv) > 1 else "bad-inputs")
    for rel, (outcome, words) in sorted(out.items()):
        print(f"{outcome:8} {rel}  {words}")
