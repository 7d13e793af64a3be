"""Stage ``image``: register each sample (path, sha256, size, label, mask) in the store."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from zsad.stores import Unit, unit_key
from zsad.datasets import Sample, exif_orientation, load_image
from zsad.datasets.base import file_sha256

from .common import zsad_task
from .decoded import remember
from .failures import Failure
from .runner import ShardJob, StageResult


INDEXED = ("path", "size", "mtime_ns")  # what a skip compares, besides the source sha256


def _unchanged(record: dict[str, Any] | None, path: str) -> bool:
    if record is None or record.get("path") != str(path):
        return False
    st = os.stat(path)
    return record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns


def registered(store, image_hash: str, unit: Unit, path: str) -> bool:
    """True when ``unit``'s image record is of ``path`` with its current size and mtime (the file
    has not changed since it was registered; its content is not re-read)."""
    return not store.pending("image", image_hash, [unit], accept=lambda u, rec: _unchanged(rec, path)).left


def _register(store, image_hash: str, unit: Unit, s: Sample) -> dict[str, Any]:
    """Register one sample (read, hash, record); its index facts."""
    st = os.stat(s.path)
    image = load_image(s.path)  # fails with the file's name if unreadable
    h, w = image.shape[:2]
    sha = file_sha256(s.path)
    remember(s.path, sha, image)  # the shard's stages decode it no more
    attrs = dict(dataclasses.asdict(s), sha256=sha, height=h, width=w, size=st.st_size, mtime_ns=st.st_mtime_ns,
                 orientation=exif_orientation(s.path))  # its mask is turned the same way (ground_truth)
    store.write_unit(unit_key("image", image_hash, unit), {}, attrs, source=sha)  # a new size/mtime is news
    return {"source": sha, **{k: attrs[k] for k in INDEXED}}


@zsad_task("image")
def register_images(job: ShardJob, samples: list[Sample]) -> StageResult:
    """Write one image unit per sample; an unchanged file (same size and mtime: ``StageStore.pending``
    with the index or the record) is not re-read.

    An unreadable file is recorded (path and reason) and the others are registered:
    done in the samples' order, failures of the others.
    """
    store, image_hash = job.store, job.hash("image")
    by_unit = {Unit.of(job.dataset, s): s for s in samples}
    left = store.pending("image", image_hash, by_unit, accept=lambda u, rec: _unchanged(rec, by_unit[u].path))
    facts = {path: {"source": rec["sha256"], **{k: rec[k] for k in INDEXED}} for path, rec in left.found.items()}
    failed = []
    for unit in left.left:
        try:
            facts[unit.path] = _register(store, image_hash, unit, by_unit[unit])
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            failed.append(Failure.of(unit, "image", by_unit[unit].path, exc))
    store.index.add("image", image_hash, job.dataset, facts)
    bad = {f.unit for f in failed}
    return StageResult(tuple(u for u in by_unit if u not in bad), tuple(failed))
