"""AnomalyDINO (Damm et al., WACV 2025): few-shot anomaly detection by nearest-neighbour search
over DINOv2 patch tokens, as its official code (github.com/dammsi/AnomalyDINO, ``src/detection.py``,
``src/backbones.py``, ``src/utils.py``, ``src/post_eval.py``) scores, through the libraries it calls
(OpenCV, scipy, scikit-learn) and zsad's nearest-patch kernel (torch).

- ``patch_distances``: each test patch's mean cosine distance ``1 - cos`` to its ``k`` nearest
  reference patches. The official code L2-normalises both sides (``faiss.normalize_L2``), asks
  faiss' flat L2 index for the ``k`` smallest squared distances ``|x|^2 + |y|^2 - 2 x.y``
  (float32, negatives clamped to 0), averages them over ``k`` and halves them: ``1 - cos`` for
  unit vectors. zsad computes the same expression through ``zsad.nearest`` (metric ``l2sq``).
- ``foreground_mask``: the first principal component of the test image's tokens above
  ``threshold``; where that keeps at most 35 % of the central crop (``border`` cut from each
  side) the sign is flipped; then OpenCV's ``kernel_size`` square dilation and closing, applied
  as the official code applies them: to the (P, 1) column of patches in raster order, not to the
  (h, w) grid, so a patch's neighbours are the patches before and after it in its row (and the
  last of the row above). Masked patches keep distance 0 and still count in the image score.
- ``image_score``: the mean of the top 1 % of the image's patch distances (all patches, masked
  ones at 0), the maximum where ``int(0.01 P)`` is 0.
- ``anomaly_map``: the (h, w) distance grid resized bilinearly with half-pixel centres to the
  image's own size (``cv2.resize``, ``INTER_LINEAR``), then a Gaussian of ``sigma`` 4 with
  reflecting borders (``scipy.ndimage.gaussian_filter``), the official calls.

Differences from the official code (listed in the README): PCA's randomized solver runs with a
fixed seed (the official one draws a new one each call; the first component agrees to float
rounding) and the distances come from zsad's kernel rather than faiss (equal to float32
rounding). Example (one reference patch; the test patch at 90 degrees has distance 1):
    >>> ref = np.array([[1.0, 0.0]]); test = np.array([[0.0, 2.0], [3.0, 0.0]])
    >>> patch_distances(test, ref).tolist()
    [1.0, 0.0]
    >>> image_score(np.array([0.2, 0.9, 0.4])), image_score(np.arange(300.0))  # max; mean of 299, 298, 297
    (0.9, 298.0)
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from scipy import ndimage

from .nearest import nearest

PCA_SEED = 0  # the official code leaves the randomized PCA unseeded


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float32 (``faiss.normalize_L2``; zero rows stay zero)."""
    x = np.ascontiguousarray(x, np.float32)
    norms = np.sqrt((x * x).sum(axis=1, dtype=np.float32))
    return x / np.where(norms > 0, norms, np.float32(1))[:, None]


def patch_distances(test_patches_pc: np.ndarray, reference_patches_mc: np.ndarray, *, k: int = 1) -> np.ndarray:
    """(P,) float64: each test patch's mean cosine distance to its ``k`` nearest reference patches.

    Args:
        test_patches_pc: (P, C) the test image's (kept) patch tokens.
        reference_patches_mc: (M, C) the memory bank: every reference image's kept patch tokens.
        k: neighbours averaged (AnomalyDINO: 1).
    """
    test, ref = np.asarray(test_patches_pc), np.asarray(reference_patches_mc)
    if test.ndim != 2 or ref.ndim != 2 or test.shape[1] != ref.shape[1]:
        raise ValueError(f"need (P, C) test and (M, C) reference patches of one width, got {test.shape} and "
                         f"{ref.shape}")
    if not 1 <= k <= len(ref):
        raise ValueError(f"k must be in 1..{len(ref)} (the reference patches), got {k}")
    if len(test) == 0:
        return np.zeros(0)
    d2 = nearest(torch.from_numpy(_unit(test)), torch.from_numpy(_unit(ref)), bounds=(0, len(ref)), metric="l2sq",
                 k=k)[:, 0]
    return (d2 / 2).double().numpy()


def image_score(distances_p: np.ndarray, *, top_fraction: float = 0.01) -> float:
    """The image's score: the mean of its ``int(top_fraction P)`` largest patch distances, or the
    largest where that count is 0 (``mean_top1p``)."""
    d = np.asarray(distances_p, np.float64).ravel()
    if d.size == 0:
        raise ValueError("an image score needs at least one patch distance")
    n = int(len(d) * top_fraction)
    return float(d.max()) if n == 0 else float(np.mean(np.sort(d)[::-1][:n]))


def anomaly_map(distances_hw: np.ndarray, *, size: int | tuple[int, int], sigma: float = 4.0) -> np.ndarray:
    """(H, W) float64: the distance grid at the image's size (``size``: H = W, or (H, W)),
    bilinear then Gaussian-smoothed (``dists2map``)."""
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(int(v) for v in size)
    grid = np.ascontiguousarray(distances_hw, np.float64)
    return ndimage.gaussian_filter(cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR), sigma=sigma)


def first_component(tokens_pc: np.ndarray) -> np.ndarray:
    """(P,) each token's coordinate on the tokens' first principal component (float32 PCA, the
    randomized solver, signs as scikit-learn fixes them)."""
    from sklearn.decomposition import PCA
    pca = PCA(n_components=1, svd_solver="randomized", random_state=PCA_SEED)
    return pca.fit_transform(np.asarray(tokens_pc, np.float32))[:, 0]


def foreground_mask(tokens_pc: np.ndarray, grid_hw: Sequence[int], *, threshold: float = 10.0, kernel_size: int = 3,
                    border: float = 0.2) -> np.ndarray:
    """(P,) bool: the patches AnomalyDINO keeps as the object (``compute_background_mask``)."""
    gh, gw = (int(v) for v in grid_hw)
    pc = first_component(tokens_pc)
    if pc.size != gh * gw:
        raise ValueError(f"{pc.size} tokens do not fill a {gh} x {gw} grid")
    mask = (pc > threshold).reshape(gh, gw)
    centre = mask[int(gh * border):int(gh * (1 - border)), int(gw * border):int(gw * (1 - border))]
    if centre.sum() <= centre.size * 0.35:  # the object is assumed central: the other side of the component
        mask = (-pc > threshold).reshape(gh, gw)
    kernel = np.ones((kernel_size, kernel_size), np.uint8)  # on the (P, 1) column, as the official code
    column = cv2.dilate(mask.reshape(-1, 1).astype(np.uint8), kernel)
    return cv2.morphologyEx(column, cv2.MORPH_CLOSE, kernel).astype(bool).ravel()


def decode(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB as the official code reads an image: ``cv2.imread(path,
    cv2.IMREAD_COLOR)`` (EXIF orientation applied, alpha dropped, 16 bits scaled to 8) then BGR to RGB."""
    with open(path, "rb") as f:
        data = np.frombuffer(f.read(), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: OpenCV cannot decode this file as an image (AnomalyDINO decodes with OpenCV)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


ANGLES = (0, 45, 90, 135, 180, 225, 270, 315)  # the reference rotations (``augment_image``)
MASKED = {"mvtec": frozenset({"capsule", "hazelnut", "pill", "screw", "toothbrush"}), "visa": None}  # None: all


def official_masking(dataset: str, class_name: str) -> bool:
    """Whether the official code masks test images of ``class_name`` (``get_dataset_info``: MVTec
    AD's capsule, hazelnut, pill, screw and toothbrush, every VisA class; a store whose name does
    not start with ``mvtec`` or ``visa``: no masking).

    Example:
        >>> official_masking("mvtec", "screw"), official_masking("mvtec", "bottle"), official_masking("visa-1", "pcb1")
        (True, False, True)
    """
    key = next((k for k in MASKED if dataset.lower().startswith(k)), None)
    return key is not None and (MASKED[key] is None or class_name in MASKED[key])


def rotations(image_hw3: np.ndarray, angles: Sequence[float] = ANGLES) -> list[np.ndarray]:
    """The reference image rotated about its centre by each angle (degrees, counter-clockwise),
    same size, bilinear, reflected borders: ``cv2.warpAffine`` as ``rotate_image``."""
    h, w = image_hw3.shape[:2]
    centre = (w / 2, h / 2)
    return [cv2.warpAffine(image_hw3, cv2.getRotationMatrix2D(centre, float(a), 1.0), (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_DEFAULT) for a in angles]


def reference_slice(shots: int, seed: int) -> slice:
    """Which of a class's sorted ``train/good`` file names are the references (the official
    deterministic draw: ``[seed * shots : (seed + 1) * shots]``)."""
    return slice(seed * shots, (seed + 1) * shots)


def batched_patch_distances(test_pc: np.ndarray, others_mc: np.ndarray, *, quantile: float = 0.001,
                            rows: int = 256) -> np.ndarray:
    """(P,) float64: AnomalyDINO's zero-shot batched score of each test patch
    (``calculate_cosine_distances``): the cosine distances ``1 - cos`` to every patch of the
    other images of the batch, the ``k = int(quantile M)``-th smallest found, and the mean of the
    distances strictly below it (float32, ``rows`` test patches at a time)."""
    k = int(quantile * len(others_mc))
    if k < 1:
        raise ValueError(f"the batch has {len(others_mc)} other patches: quantile {quantile} of them is none; "
                         f"a batched score needs at least {int(np.ceil(1 / quantile))}")
    ref = torch.nn.functional.normalize(torch.as_tensor(np.asarray(others_mc, np.float32)), dim=1)
    test = torch.nn.functional.normalize(torch.as_tensor(np.asarray(test_pc, np.float32)), dim=1)
    out = []
    for start in range(0, len(test), rows):
        d = 1 - test[start:start + rows] @ ref.T
        below = d < torch.kthvalue(d, k, dim=1).values[:, None]
        out.append((d * below).sum(dim=1) / below.sum(dim=1))
    return torch.cat(out).double().numpy()
