"""Any folder of images (recursively): scoring only, no labels."""

from __future__ import annotations

from pathlib import Path

from .base import IMAGE_SUFFIXES, DatasetError, Sample, safe_id


def read_folder(root: str | Path, class_name: str | None = None) -> list[Sample]:
    """Every image under ``root`` as an unlabelled test sample of ``class_name`` (default: the
    folder's name)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: image folder does not exist")
    cls = class_name or root.resolve().name
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{root}: no images ({', '.join(sorted({s.lower() for s in IMAGE_SUFFIXES}))}) found")
    return [Sample(str(p), cls, "test", -1, None, safe_id(str(p.relative_to(root))), "") for p in files]
