"""Data set readers: one list of ``Sample`` for VisA, MVTec AD, plain folders, synthetic sets."""

from __future__ import annotations

from pathlib import Path

from .base import ImageLimits, DatasetError, Sample, exif_orientation, upright, ground_truth, image_ids, known_ground_truth, is_image_file, load_image, load_mask, safe_id
from .folder import image_files, read_folder, scan_folder
from .mvtec import read_mvtec
from .synthetic import SyntheticSpec, write_synthetic
from .visa import VISA_CLASSES, read_visa

DATASET_KINDS = ("visa", "mvtec", "folder", "synthetic")


def read_dataset(kind: str, root: str | Path, classes: list[str] | None = None, split: str = "test") -> list[Sample]:
    """Samples of a data set of ``kind`` (synthetic sets use the MVTec reader): its ``test`` split,
    or its ``train`` split (normal images: the few-shot mode's references).

    Raises:
        DatasetError: also when two samples would share a store key (class, split, image id).
    """
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    if kind == "visa":
        samples = read_visa(root, classes, split)
    elif kind in ("mvtec", "synthetic"):
        samples = read_mvtec(root, classes, split)
    elif kind == "folder" and split == "train":
        raise ValueError("a plain folder has no train split; precompute the reference images as their own "
                         "folder data set, or give them to `zsad predict --reference DIR`")
    elif kind == "folder":
        samples = read_folder(root, classes[0] if classes else None)
    else:
        raise ValueError(f"unknown data set kind {kind!r}; expected one of {DATASET_KINDS}")
    return check_unique(samples)


def check_unique(samples: list[Sample]) -> list[Sample]:
    """``samples`` unchanged, or a ``DatasetError`` naming two files that would share a key."""
    seen: dict[tuple[str, str, str], str] = {}
    for s in samples:
        key = (s.class_name, s.split, s.image_id)
        if key in seen:
            raise DatasetError(f"{s.path} and {seen[key]} would share the store key {'/'.join(key)}: "
                               "one would silently replace the other's results; rename one of them")
        seen[key] = s.path
    return samples


__all__ = ["ImageLimits", "DatasetError", "Sample", "exif_orientation", "upright", "ground_truth", "known_ground_truth", "load_image", "load_mask", "safe_id", "image_ids", "is_image_file", "image_files", "scan_folder", "read_folder", "read_mvtec",
           "read_visa", "read_dataset", "write_synthetic", "SyntheticSpec", "VISA_CLASSES", "DATASET_KINDS"]
