"""Stage ``dino_tokens``: AnomalyDINO's last-block patch tokens (float32, ``(rotation, patch,
channel)``) of every test image and of each class's first ``references`` train images by sorted
file name (every rotation), when the config asks (``PipelineConfig.anomalydino``). Images are
decoded by OpenCV as the official code decodes them (``zsad.anomalydino.decode``)."""

from __future__ import annotations

from pathlib import PurePath

import numpy as np

from zsad.anomalydino import ANGLES, decode, rotations
from zsad.stores import StageStore, Unit, unit_key
from zsad.stores.schema import DINO_TOKENS

from .common import zsad_task
from .runner import ShardJob, StageResult, run_stage
from .worker import get_model


def reference_units(store: StageStore, image_hash: str, units: tuple[Unit, ...], first: int) -> set[Unit]:
    """The units among the first ``first`` train images of each class of ``units`` by file name
    (as the official ``sorted(os.listdir(train/good))``), read from the store's image records."""
    out: set[Unit] = set()
    for dataset, cls in sorted({(u.dataset, u.class_name) for u in units if u.split == "train"}):
        train = store.list_units("image", image_hash, dataset, [cls], split="train")
        named = sorted((PurePath(str(store.read_attrs(unit_key("image", image_hash, u))["path"])).name, u)
                       for u in train)
        out.update(u for _, u in named[:first])
    return out


@zsad_task("dino_tokens")
def dino_tokens(job: ShardJob, units: tuple[Unit, ...]) -> StageResult:
    ac = job.cfg.anomalydino
    if ac is None:  # AnomalyDINO is off in this config: nothing to compute
        return StageResult(tuple(units))
    refs = reference_units(job.store, job.hash("image"), units, ac.references)
    chosen = tuple(u for u in units if u.split != "train" or u in refs)

    def setup():
        return get_model(ac.backbone, device=job.cfg.device, batch_size=1, precision=job.cfg.precision)

    def one(store, model, unit, sha, attrs):
        image = decode(str(attrs["path"]))
        images = rotations(image) if unit.split == "train" and ac.rotations else [image]
        encoded = [model.encode_patches(im, ac.smaller_edge) for im in images]
        store.write_unit(unit_key("dino_tokens", job.hash("dino_tokens"), unit),
                         {DINO_TOKENS: np.stack([t for t, _ in encoded])},
                         {"grid": list(encoded[0][1]), "image_hw": list(image.shape[:2]),
                          "angles": list(ANGLES[:len(images)])}, source=sha)

    out = run_stage(job, "dino_tokens", chosen, one, setup)
    done = set(out.done)
    return StageResult(tuple(u for u in units if (u.split == "train" and u not in refs) or u in done), out.failed)
