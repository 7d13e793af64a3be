"""Reference folders for the few-shot mode: normal images cached as a data set of their own.

A folder's images go into the store as the ``train`` split of a data set named after the
folder's files (``{name}-ref-{digest of paths, sizes and times}``): adding, removing or editing
a reference makes another reference set, hence another few-shot variant with its own
thresholds, and the unchanged ones are never computed twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from zsad.config import PipelineConfig
from zsad.datasets import Sample, image_ids, scan_folder
from zsad.tasks.failures import Failure

from .precompute import run_precompute
from .command_requests import PrecomputeRequest


def _files(folder: str | Path) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--reference {folder}: not a folder of normal images")
    files = sorted(f.resolve() for f in scan_folder(root)[0])
    if not files:
        raise ValueError(f"--reference {folder}: no image files in this folder")
    return files


def reference_name(folder: str | Path, name: str) -> str:
    """The data set name of ``folder``'s images: changes whenever a file is added, removed or
    modified."""
    stamp = [(f.as_posix(), f.stat().st_size, f.stat().st_mtime_ns) for f in _files(folder)]
    return f"{name}-ref-{hashlib.sha256(repr(stamp).encode()).hexdigest()[:8]}"


def reference_classes(folder: str | Path, classes: list[str] | None) -> list[str]:
    """``classes``, or the subfolders of ``folder`` (one per class)."""
    if classes:
        return list(classes)
    found = sorted(p.name for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if Path(folder).is_dir() else []
    if not found:
        raise ValueError(f"--reference {folder}: give one subfolder of normal images per class, or name the class "
                         "with --classes")
    return found


def reference_samples(folder: str | Path, classes: list[str]) -> list[Sample]:
    """Normal ``train`` samples: the images of ``folder/<class>/`` for each class, or, for a
    single class, the images of ``folder`` itself when it has no such subfolder."""
    root, out = Path(folder), []
    for cls in classes:
        sub = root / cls
        if not sub.is_dir() and len(classes) > 1:
            raise ValueError(f"--reference {folder}: no folder {sub} of normal {cls} images; give one subfolder "
                             "per class (or evaluate one class with --classes)")
        files = _files(sub if sub.is_dir() else root)
        out += [Sample.reference(f, cls, i) for f, i in zip(files, image_ids([f.as_posix() for f in files]))]
    return out


def cache_references(folder: str | Path, classes: list[str], store: str, cfg: PipelineConfig, ref: str,
                     progress: bool = True) -> list[Failure]:
    """Precompute the reference images (with patches) as data set ``ref`` (``reference_name``,
    named once by the caller: the variant it scores carries the same name); their failures
    (stage marked ``reference ...``: a bad reference is named, the rest are used)."""
    out = run_precompute(PrecomputeRequest(store=store, name=ref, progress=progress),
                         samples=reference_samples(folder, classes), cfg=cfg)
    return [dataclasses.replace(f, stage=f"reference {f.stage}") for f in out.failed]
