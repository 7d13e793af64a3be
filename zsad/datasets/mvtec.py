"""MVTec AD layout reader: ``{class}/test/{defect}/*.png``, ``{class}/ground_truth/{defect}/*_mask.png``."""

from __future__ import annotations

from pathlib import Path

from .base import DatasetError, Sample, is_image_file, safe_id

MVTEC_CLASSES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
                 "screw", "tile", "toothbrush", "transistor", "wood", "zipper")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def read_mvtec(root: str | Path, classes: list[str] | None = None, split: str = "test") -> list[Sample]:
    """Samples of an MVTec-AD-layout folder (also what ``datasets.synthetic`` writes).

    Args:
        root: folder holding one sub-folder per class.
        classes: classes to read (default: every sub-folder that has a ``test`` folder).
        split: ``"test"`` (labelled) or ``"train"`` (normal images only).

    Raises:
        DatasetError: for a missing folder or an anomalous image without its mask.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: data set root does not exist")
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if (p / "test").is_dir())
        if not classes:
            raise DatasetError(f"{root}: no class folders with a 'test' sub-folder; expected the MVTec AD layout "
                               "{root}/{class}/test/{good|defect}/*.png")
    samples: list[Sample] = []
    for cls in classes:
        split_dir = root / cls / split
        if not split_dir.is_dir():
            raise DatasetError(f"{split_dir}: missing; expected {root}/{cls}/{split}/{{good|defect}}/*.png")
        for defect_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            defect = defect_dir.name
            for img in _images(defect_dir):
                mask = None
                if defect != "good":
                    mask_p = root / cls / "ground_truth" / defect / f"{img.stem}_mask.png"
                    if not mask_p.is_file():
                        raise DatasetError(f"{img}: anomalous image without its mask; expected {mask_p}")
                    mask = str(mask_p)
                samples.append(Sample(str(img), cls, split, 0 if defect == "good" else 1, mask,
                                      safe_id(f"{defect}/{img.name}"), defect))
        if not any(s.class_name == cls for s in samples):
            raise DatasetError(f"{split_dir}: no images found")
    return samples
