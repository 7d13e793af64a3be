"""Samples, image/mask loading with clear errors."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .decode import DatasetError, ImageLimits, decode_image, exif_orientation, upright  # noqa: F401 - re-exported

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Sample:
    """One test image.

    Attributes:
        path: image file.
        class_name: object class (folder name: ``pcb1``, ``bottle``...).
        split: ``"test"`` or ``"train"``.
        label: 0 normal, 1 anomalous, -1 unknown (plain folders).
        mask_path: ground-truth mask for anomalous images, else None.
        image_id: identifier unique within (dataset, class, split), safe as a path component.
        defect: defect type folder (``"good"`` for normal), or "" when unknown.
    """

    path: str
    class_name: str
    split: str
    label: int
    mask_path: str | None
    image_id: str
    defect: str = ""

    @classmethod
    def unlabelled(cls, path: str | os.PathLike, class_name: str, image_id: str) -> "Sample":
        """A test image whose label is unknown (plain folders, ``zsad predict``).

        Example:
            >>> Sample.unlabelled("line/a.png", "pill", "a").label
            -1
        """
        return cls(str(path), class_name, "test", -1, None, image_id, "")

    @classmethod
    def reference(cls, path: str | os.PathLike, class_name: str, image_id: str) -> "Sample":
        """A known-good image of the train split (few-shot references)."""
        return cls(str(path), class_name, "train", 0, None, image_id, "good")


def safe_id(text: str) -> str:
    """A store-key-safe identifier: letters, digits, ``-`` and ``_`` only.

    Example:
        >>> safe_id("test/broken_large/000.png")
        'test_broken_large_000'
    """
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", text)
    out = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")
    if not out:
        raise DatasetError(f"cannot make an image id from {text!r}")
    return out


def _sanitise(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.")


def image_ids(names: list[str]) -> list[str]:
    """Store-key-safe ids that never merge two different names.

    A name made only of letters, digits, ``_``, ``-`` and ``.`` (extension kept) is its own id;
    any other name is sanitised (other characters become ``_``; leading dots and underscores
    go) and gets ``-`` plus 8 hex digits of the name's SHA-1, so ``a.png`` and ``a.jpg``,
    ``b c.png`` and ``b_c.png``, or ``ü.png`` and ``日本.png`` all stay apart.

    Raises:
        DatasetError: if two names still map to one id (identical names given twice).

    Example:
        >>> image_ids(["a.png", "a.jpg", "good/001.png"])[:2]
        ['a.png', 'a.jpg']
        >>> image_ids(["good/001.png"])[0].startswith("good_001.png-")
        True
    """
    out = []
    for name in names:
        clean = _sanitise(name)
        if clean != name or not clean:
            clean = f"{clean or 'image'}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
        out.append(clean)
    seen: dict[str, str] = {}
    for name, i in zip(names, out):
        if i in seen:
            raise DatasetError(f"{name!r} and {seen[i]!r} would share the store id {i!r}; rename one of them")
        seen[i] = name
    return out


def is_image_file(path: Path) -> bool:
    """An image by its extension, any case (``.PNG``, ``.Jpeg``); hidden files (``._x.png``) are not."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def load_image(path: str | Path, limits: ImageLimits | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (``decode.decode_image``: faithful decoding,
    size limits); a clear error names the file and the reason otherwise."""
    return decode_image(path, limits)


def load_mask(path: str | Path, shape_hw: tuple[int, int] | None = None, orientation: int = 1) -> np.ndarray:
    """Read a ground-truth mask as (H, W) bool (any non-zero pixel is anomalous), turned by its
    image's EXIF ``orientation`` (the mask is drawn on the stored pixels; the image is decoded upright)."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: mask file does not exist")
    try:
        with Image.open(p) as im:
            arr = upright(np.asarray(im.convert("L")) > 0, orientation)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"{p}: not a readable mask image ({exc})") from None
    if shape_hw is not None and arr.shape != tuple(shape_hw):
        raise DatasetError(f"{p}: mask is {arr.shape[1]}x{arr.shape[0]} px but its image is "
                           f"{shape_hw[1]}x{shape_hw[0]} px")
    return arr


def ground_truth(mask_path: str | Path | None, shape_hw: tuple[int, int], orientation: int = 1) -> np.ndarray:
    """The (H, W) bool ground truth of an image: its mask file (turned by the image's EXIF
    ``orientation``), or all False for a normal image."""
    return load_mask(mask_path, shape_hw, orientation) if mask_path else np.zeros(shape_hw, bool)


def known_ground_truth(label: int, mask_path: str | Path | None, shape_hw: tuple[int, int], orientation: int = 1
                       ) -> np.ndarray | None:
    """``ground_truth`` where it is known: None for an unlabelled image (label -1) or an anomalous
    one without a mask file (panels then leave the ground truth out rather than show "no defect")."""
    if label < 0 or (label == 1 and not mask_path):
        return None
    return ground_truth(mask_path, shape_hw, orientation)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
