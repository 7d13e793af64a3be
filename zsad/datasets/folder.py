"""Any folder of images (recursively): scoring only, no labels."""

from __future__ import annotations

from pathlib import Path

from .base import IMAGE_SUFFIXES, DatasetError, Sample, image_ids, is_image_file


def image_files(root: str | Path) -> list[Path]:
    """Image files under ``root`` (recursively, extensions in any case, hidden files skipped)."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if is_image_file(p) and not any(
        part.startswith(".") for part in p.relative_to(root).parts) and p.is_file())


def read_folder(root: str | Path, class_name: str | None = None) -> list[Sample]:
    """Every image under ``root`` as an unlabelled test sample of ``class_name`` (default: the
    folder's name). Image ids are the relative paths made key-safe (``image_ids``)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: image folder does not exist")
    cls = class_name or root.resolve().name
    files = image_files(root)
    if not files:
        raise DatasetError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}, any case) found")
    ids = image_ids([p.relative_to(root).as_posix() for p in files])
    return [Sample(str(p), cls, "test", -1, None, i, "") for p, i in zip(files, ids)]
