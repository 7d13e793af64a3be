"""Any folder of images (recursively): scoring only, no labels."""

from __future__ import annotations

from pathlib import Path

from .base import IMAGE_SUFFIXES, DatasetError, Sample, image_ids, is_image_file


def scan_folder(root: str | Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files under ``root`` (recursively, extensions in any case), and every other file
    with the reason it is skipped: hidden (``.x.png``, macOS ``._x.png``, inside ``.git``), a
    dangling link, or not an image extension."""
    root = Path(root)
    files, skipped = [], []
    for p in sorted(root.rglob("*")):
        if p.is_dir():
            continue
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            skipped.append((str(p), "hidden file"))
        elif not p.exists():
            skipped.append((str(p), "dangling link: its target does not exist"))
        elif not is_image_file(p):
            skipped.append((str(p), f"not an image file name (expected {', '.join(IMAGE_SUFFIXES)}, any case)"))
        else:
            files.append(p)
    return files, skipped


def image_files(root: str | Path) -> list[Path]:
    """The image files of ``scan_folder``."""
    return scan_folder(root)[0]


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
    return [Sample.unlabelled(p, cls, i) for p, i in zip(files, ids)]
