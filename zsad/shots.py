"""Which images a few-shot or mutual variant compares against: drawing the shots, the leak check,
and the digest naming a set of images.

Pure Python/numpy: the store-facing side (``zsad.tasks.patches``) lists the candidates and reads
their records; these functions decide.
"""

from __future__ import annotations

import hashlib
import json
from typing import Mapping, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def draw_shots(candidates: Sequence[T], shots: int, seed: int, *, class_name: str, source: str) -> list[T]:
    """``shots`` of ``candidates`` (sorted as given, order kept), drawn without replacement with
    ``numpy.random.default_rng(seed)``; 0 shots = all of them (full-shot).

    Args:
        candidates: the class's reference images (any items, e.g. store units), in a stable order.
        class_name, source: named in the errors (the class and the data set the references are from).

    Example:
        >>> draw_shots(["a", "b", "c", "d"], 2, 0, class_name="pcb1", source="visa")
        ['c', 'd']
        >>> draw_shots(["a", "b"], 0, 0, class_name="pcb1", source="visa")
        ['a', 'b']
    """
    if not candidates:
        raise ValueError(f"few-shot: no reference images of class {class_name!r} are cached with patches in data set "
                         f"{source!r} (train split); run `zsad precompute --root DATA --name {source} --split train "
                         "--patches` (or give `zsad predict --reference DIR`)")
    if shots > len(candidates):
        raise ValueError(f"few-shot: {shots} shots asked for class {class_name!r}, but data set {source!r} holds only "
                         f"{len(candidates)} reference image(s); ask for at most {len(candidates)} or cache more")
    if not shots:
        return list(candidates)
    picked = np.random.default_rng(seed).choice(len(candidates), shots, replace=False)
    return [candidates[i] for i in sorted(picked)]


def check_no_leak(refs: Mapping[str, tuple[str, str]], tests: Mapping[str, tuple[str, str]], class_name: str) -> None:
    """A ``ValueError`` naming the files when a reference image is also a test image (same bytes).

    Args:
        refs, tests: image id -> (sha256 of the image's bytes, its file path).

    Example:
        >>> check_no_leak({"r": ("s1", "ref/a.png")}, {"t": ("s2", "test/b.png")}, "pcb1")   # no error
        >>> check_no_leak({"r": ("s1", "ref/a.png")}, {"t": ("s1", "test/a.png")}, "pcb1")
        Traceback (most recent call last):
        ...
        ValueError: few-shot, class 'pcb1': 1 test image(s) are also reference images (test/a.png is reference ref/a.png); a reference scored as a test image inflates the metrics: remove it from one of the sets
    """
    by_sha = {sha: path for sha, path in refs.values()}
    leaks = [(path, by_sha[sha]) for sha, path in tests.values() if sha in by_sha]
    if leaks:
        shown = "; ".join(f"{t} is reference {r}" for t, r in leaks[:3])
        raise ValueError(f"few-shot, class {class_name!r}: {len(leaks)} test image(s) are also reference images "
                         f"({shown}); a reference scored as a test image inflates the metrics: remove it from one "
                         "of the sets")


def digest(pairs: Sequence[tuple[str, str]]) -> str:
    """16 hex digits naming a set of (image id, sha256) pairs, whatever their order.

    Example:
        >>> digest([("a", "1"), ("b", "2")]) == digest([("b", "2"), ("a", "1")])
        True
    """
    return hashlib.sha256(json.dumps(sorted(pairs)).encode()).hexdigest()[:16]
