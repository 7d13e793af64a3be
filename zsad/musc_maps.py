"""MuSc's maps from cached distances, at the sizes an evaluation needs, the seed hybrids, and
MuSc's subsets of a class.

The ``musc`` stage keeps, per image and neighbourhood size r, the distance of each of its
patches to the nearest patch of every image of its batch (``nearest_lnp``: layer, batch image,
patch; its own column is +inf). Every MuSc parameter but r and ``same_position`` is applied
here, without a model and without the N^2 distance pass: the fraction, the layer subset and
the r subset (``row_scores``), the foreground hybrids (``with_foreground``) and the sizes
(``full_size``: the image's own, zsad's protocol; ``zsad.musc.upsample``: MuSc's square).
Pure numpy/torch.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .datasets.decode import EXIF_UPRIGHT
from .musc import scores_from_nearest


def row_scores(rows_r: Sequence[np.ndarray], self_index: int, fraction: float,
               layers: Sequence[int] | None = None) -> np.ndarray:
    """(P,) float64 patch scores of one image from its cached rows (one (L, N, P) array per r, in
    the variant's r order): its own column dropped, the ``layers`` (indices into L) kept.

    Example (one layer, two patches, a batch of three; k = int(0.5 * 2) = 1):
        >>> row = np.array([[[np.inf, np.inf], [0.5, 0.25], [1.0, 0.75]]])   # (L=1, N=3, P=2)
        >>> row_scores([row], 0, 0.5).tolist()
        [0.5, 0.25]
    """
    kept = []
    for rows in rows_r:
        rows = np.delete(np.asarray(rows, np.float32), self_index, axis=1)
        kept.append(rows if layers is None else rows[list(layers)])
    if kept and kept[0].shape[1] < 1:
        raise ValueError("MuSc: the image's batch holds no other image")
    return scores_from_nearest([torch.from_numpy(np.ascontiguousarray(r)) for r in kept], fraction)


def full_size(map_gg: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(g, g) -> (H, W) float32: bilinear with ``align_corners=True``, the same interpolation as
    MuSc's square map, here straight to the image's own size (MuSc resizes every image to a
    square, so its map covers the whole image)."""
    m = torch.as_tensor(np.asarray(map_gg, np.float64))[None, None]
    return F.interpolate(m, size=tuple(int(v) for v in image_hw), mode="bilinear",
                         align_corners=True)[0, 0].float().numpy()


def with_foreground(map_hw: np.ndarray, rule: str, *, mask_hw: np.ndarray | None = None,
                    prob_hw: np.ndarray | None = None) -> np.ndarray:
    """A MuSc map and the seed's foreground: ``none`` (as is), ``restrict`` (zero outside the
    SAM/IS-Net foreground ``mask_hw``), ``weight`` (times the IS-Net probability ``prob_hw``,
    uint8 0..255 or float 0..1).

    Example:
        >>> m = np.array([[2.0, 4.0]], np.float32)
        >>> with_foreground(m, "restrict", mask_hw=np.array([[True, False]])).tolist()
        [[2.0, 0.0]]
        >>> with_foreground(m, "weight", prob_hw=np.array([[255, 51]], np.uint8)).tolist()
        [[2.0, 0.800000011920929]]
    """
    if rule == "none":
        return map_hw
    if rule == "restrict":
        if mask_hw is None or mask_hw.shape != map_hw.shape:
            raise ValueError(f"restrict: the foreground mask {None if mask_hw is None else mask_hw.shape} does not "
                             f"match the map {map_hw.shape}")
        return np.where(mask_hw, map_hw, 0).astype(np.float32)
    if rule == "weight":
        if prob_hw is None or prob_hw.shape != map_hw.shape:
            raise ValueError(f"weight: the IS-Net map {None if prob_hw is None else prob_hw.shape} does not match "
                             f"the map {map_hw.shape}")
        p = prob_hw.astype(np.float32) / 255 if prob_hw.dtype == np.uint8 else prob_hw.astype(np.float32)
        return (map_hw * p).astype(np.float32)
    raise ValueError(f"MuSc foreground rule must be none, restrict or weight, got {rule!r}")


def protocol_mask(mask_path: str | None, size: int, orientation: int = 1) -> np.ndarray:
    """(size, size) bool: MuSc's ground truth (``datasets/visa.py``): the mask file read as 8-bit
    grey, resized by PIL bilinear to the square, any non-zero pixel anomalous; all False without
    a mask (a normal image). Turned first by its image's EXIF ``orientation`` (zsad decodes the
    image upright)."""
    if mask_path is None:
        return np.zeros((size, size), bool)
    with Image.open(mask_path) as im:
        grey = im.convert("L")
    if orientation != 1:
        grey = grey.transpose(EXIF_UPRIGHT[orientation])
    return np.asarray(grey.resize((size, size), Image.BILINEAR)) > 0


def divide_subsets(paths: Sequence[str], divide_num: int, seed: int = 0) -> list[list[int]]:
    """MuSc's ``divide_num`` subsets (``datasets/visa.py: sub_datasets``): indices into ``paths``.

    Images are grouped by their parent folder name (VisA's ``Normal``/``Anomaly``, MVTec AD's
    defect types); each group is shuffled with ``random.seed(seed)`` (Python's generator, as
    MuSc) and cut into runs of ``divide_num``; subset i takes each run's i-th image. MuSc's
    ``paths`` are in its ``meta.json``'s order: the same order gives the same subsets.

    Example:
        >>> divide_subsets(["c/Normal/0", "c/Normal/1", "c/Anomaly/2"], 1)
        [[0, 1, 2]]
    """
    if not isinstance(divide_num, int) or divide_num < 1:
        raise ValueError(f"divide_num must be a whole number >= 1, got {divide_num!r}")
    if divide_num == 1:
        return [list(range(len(paths)))]
    subsets = []
    for it in range(divide_num):
        random.seed(seed)
        groups: dict[str, list[int]] = {}
        for i, path in enumerate(paths):
            groups.setdefault(path.replace("\\", "/").split("/")[-2], []).append(i)
        subset = []
        for ids in groups.values():
            random.shuffle(ids)
            runs = [ids[i: i + divide_num] for i in range(0, len(ids), divide_num)]
            subset += [run[it] for run in runs if len(run) > it]
        subsets.append(subset)
    return subsets
