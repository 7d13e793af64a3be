"""Data set readers: one list of ``Sample`` for VisA, MVTec AD, plain folders, synthetic sets."""

from __future__ import annotations

from pathlib import Path

from .base import DatasetError, Sample, ground_truth, image_ids, is_image_file, load_image, load_mask, safe_id
from .folder import image_files, read_folder
from .mvtec import read_mvtec
from .synthetic import SyntheticSpec, write_synthetic
from .visa import VISA_CLASSES, read_visa

DATASET_KINDS = ("visa", "mvtec", "folder", "synthetic")


def read_dataset(kind: str, root: str | Path, classes: list[str] | None = None) -> list[Sample]:
    """Test samples of a data set of ``kind`` (synthetic sets use the MVTec reader)."""
    if kind == "visa":
        return read_visa(root, classes)
    if kind in ("mvtec", "synthetic"):
        return read_mvtec(root, classes)
    if kind == "folder":
        return read_folder(root, classes[0] if classes else None)
    raise ValueError(f"unknown data set kind {kind!r}; expected one of {DATASET_KINDS}")


__all__ = ["DatasetError", "Sample", "ground_truth", "load_image", "load_mask", "safe_id", "image_ids", "is_image_file", "image_files", "read_folder", "read_mvtec",
           "read_visa", "read_dataset", "write_synthetic", "SyntheticSpec", "VISA_CLASSES", "DATASET_KINDS"]
