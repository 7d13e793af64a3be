"""VisA reader: ``split_csv/1cls.csv`` (object, split, label, image, mask) beside the class folders."""

from __future__ import annotations

import csv
from pathlib import Path

from .base import DatasetError, Sample, safe_id

VISA_CLASSES = ("pcb1", "pcb2", "pcb3", "pcb4", "capsules", "candle", "macaroni1", "macaroni2", "cashew",
                "chewinggum", "fryum", "pipe_fryum")
VISA_COLUMNS = ("object", "split", "label", "image", "mask")


def read_visa(root: str | Path, classes: list[str] | None = None, split: str = "test",
              csv_name: str = "split_csv/1cls.csv") -> list[Sample]:
    """Samples of the VisA data set in its published layout.

    Labels in the csv are ``normal``/``anomaly``; mask paths are relative to ``root``.

    Raises:
        DatasetError: missing csv or column, unknown label, missing image or mask file.
    """
    root = Path(root)
    csv_path = root / csv_name
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: missing; VisA's published layout has {csv_name} with columns "
                           f"{', '.join(VISA_COLUMNS)} beside the class folders")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: a leading BOM is fine
            reader = csv.DictReader(f)
            missing = [c for c in VISA_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{csv_path}: missing column(s) {missing}; found {reader.fieldnames}")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        line = csv_path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{csv_path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                           f"{exc.start}); save the csv as UTF-8") from None
    wanted = set(classes) if classes else None
    samples = []
    for line, row in enumerate(rows, start=2):
        if row["split"] != split or (wanted is not None and row["object"] not in wanted):
            continue
        if row["label"] not in ("normal", "anomaly"):
            raise DatasetError(f"{csv_path}:{line}: label must be 'normal' or 'anomaly', got {row['label']!r}")
        image = root / row["image"]
        if not image.is_file():
            raise DatasetError(f"{csv_path}:{line}: image {image} does not exist")
        label = int(row["label"] == "anomaly")
        mask = None
        if label:
            if not row["mask"]:
                raise DatasetError(f"{csv_path}:{line}: anomalous image {image} has no mask path")
            mask_p = root / row["mask"]
            if not mask_p.is_file():
                raise DatasetError(f"{csv_path}:{line}: mask {mask_p} of anomalous image {image} does not exist")
            mask = str(mask_p)
        samples.append(Sample(str(image), row["object"], split, label, mask, safe_id("/".join(Path(row["image"]).parts[-2:])),
                              "anomaly" if label else "good"))
    if wanted:
        absent = wanted - {s.class_name for s in samples}
        if absent:
            raise DatasetError(f"{csv_path}: no {split} rows for class(es) {sorted(absent)}")
    return samples
