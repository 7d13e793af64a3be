"""Per-process state shared by the tasks: open stores, loaded models, counters for tests."""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Iterable

from stores import StageStore, Unit, unit_key
from zsad.config import ModelSpec, PipelineConfig, config_from_dict

from .decoded import prefetch, start_shard as forget_images

_STORES: dict[str, StageStore] = {}
_MODELS: dict[tuple, Any] = {}
_LOCK = threading.Lock()
MODEL_LOADS: collections.Counter = collections.Counter()  # family -> number of loads in this process


def open_store(url: str) -> StageStore:
    with _LOCK:
        if url not in _STORES:
            _STORES[url] = StageStore(url)
        return _STORES[url]


_RUNS: dict[str, str] = {}  # store URL -> the run this process last worked for


def begin_run(store_url: str, run_id: str, verify: bool = False) -> StageStore:
    """The store, its unit index forgotten when ``run_id`` is new to this process (a Dask worker
    lives across runs; others may have added or pruned units since). ``verify``: read every
    unit's marker instead of trusting the index."""
    store = open_store(store_url)
    with _LOCK:
        if run_id and _RUNS.get(store_url) != run_id:
            store.index.forget()
            store.index.trusted = not verify
            _RUNS[store_url] = run_id
    return store


def forget_stores() -> None:
    with _LOCK:
        _STORES.clear()


def get_model(spec: ModelSpec, **kwargs: Any) -> Any:
    """The model for ``spec``, loaded on first use in this process and kept."""
    key = (spec, tuple(sorted(kwargs.items())))
    with _LOCK:
        if key not in _MODELS:
            from zsad.models import load_model  # imported lazily: aggregate never gets here
            _MODELS[key] = load_model(spec, **kwargs)
            MODEL_LOADS[spec.family] += 1
        return _MODELS[key]


def decode_config(cfg: dict[str, Any]) -> PipelineConfig:
    return config_from_dict(PipelineConfig, cfg)


def parse_units(units: Iterable[str]) -> list[Unit]:
    return [Unit.parse(u) for u in units]


_IMAGE_RECORDS: dict[tuple[str, str], dict[str, Any]] = {}  # the shard's image records, read once


def image_source(store: StageStore, image_hash: str, unit: Unit) -> tuple[str, dict[str, Any]]:
    """(sha256, attrs) of a registered image: read once per shard (the shard's stages all ask)."""
    key = (store.url, unit_key("image", image_hash, unit))
    attrs = _IMAGE_RECORDS.get(key)
    if attrs is None:
        attrs = _IMAGE_RECORDS[key] = store.read_attrs(key[1])
    return attrs["sha256"], attrs


def start_shard() -> None:
    """A new shard: forget the previous one's image records, decoded images and kept units."""
    _IMAGE_RECORDS.clear()
    forget_images()
    with _LOCK:
        for store in _STORES.values():
            store.backend.drop_kept()


def pending(store: StageStore, stage: str, stage_hash: str, image_hash: str, units: list[Unit]
            ) -> tuple[list[tuple[Unit, str, dict[str, Any]]], dict[str, dict[str, str]]]:
    """Units whose ``stage`` output is missing, incomplete or made from another image version,
    and the units found complete by reading them (for the index).

    A unit the index records as made from the image version the index records is skipped
    without a read; any other is checked by its marker (one read of the image record, one of
    the unit), unless one listing of its folder shows it absent. Not trusting the index
    (``--verify``) also reads every chunk of a complete unit and checks it (``verify_unit``).
    """
    def source(unit: Unit) -> str:  # the image version: from the index when it has it, else its record
        indexed = store.index.entries("image", image_hash, unit.dataset).get(unit.path)
        return indexed["source"] if indexed and indexed.get("source") else image_source(store, image_hash, unit)[0]

    left = store.pending(stage, stage_hash, units, source)
    todo = [(unit, *image_source(store, image_hash, unit)) for unit in left.left]
    return todo, {path: {"source": attrs.get("source")} for path, attrs in left.found.items()}


def add_to_index(store: StageStore, stage: str, stage_hash: str, facts: dict[str, dict[str, Any]]) -> None:
    """Record complete units (``{unit path: facts}``) in the index, one record per data set."""
    by_dataset: dict[str, dict[str, dict[str, Any]]] = collections.defaultdict(dict)
    for path, f in facts.items():
        by_dataset[path.split("/", 1)[0]][path] = f
    for dataset, units in by_dataset.items():
        store.index.add(stage, stage_hash, dataset, units)


def unit_error(unit: Unit | str, stage: str, path: str, exc: BaseException) -> dict[str, str]:
    """A small, JSON-able record of one image's failure in one stage."""
    return {"unit": unit if isinstance(unit, str) else unit.path, "stage": stage, "path": path,
            "error": str(exc) or type(exc).__name__}


def failure_text(record: dict[str, str]) -> str:
    """``path: reason (stage S)``, without repeating a path the reason already starts with."""
    msg, path = record["error"], record["path"]
    return f"{msg if msg.startswith(path) else f'{path}: {msg}'} (stage {record['stage']})"


def run_stage(store_url: str, stage: str, plan_hashes: dict[str, str], units: list[str],
              compute_one: Callable[[StageStore, Any, Unit, str, dict], None],
              setup: Callable[[], Any] = lambda: None, decodes: bool = False,
              compute_group: Callable[[StageStore, Any, list[tuple[Unit, str, dict]]], None] | None = None,
              group: int = 1) -> dict[str, list]:
    """Skip complete units and compute the rest, one image at a time, isolating failures.

    ``setup()`` runs once when there is work (it loads the model: its errors concern every image
    and fail the task); ``compute_one(store, context, unit, sha256, image_attrs)`` writes one
    unit. An exception there is recorded for that image and the others go on. ``decodes``: the
    stage reads the images (``tasks.decoded.image_of``), so the next two are decoded ahead.
    With ``compute_group`` and ``group`` > 1, ``group`` images at a time go to
    ``compute_group(store, context, [(unit, sha256, attrs), ...])`` (one batch for the model);
    if a group fails, its images are retried one by one so that only the bad one is recorded.

    Returns:
        ``{"done": [unit paths computed or already complete], "failed": [unit_error records]}``.
    """
    store = open_store(store_url)
    parsed = parse_units(units)
    todo, complete = pending(store, stage, plan_hashes[stage], plan_hashes["image"], parsed)
    failed: list[dict[str, str]] = []
    if todo:
        context = setup()
        size = group if compute_group is not None else 1
        for start in range(0, len(todo), size):
            items = todo[start: start + size]
            if decodes:
                prefetch([a for _, _, a in todo[start + size: start + 2 * size + 1]])
            if size > 1:
                try:
                    compute_group(store, context, items)
                    complete.update({u.path: {"source": sha} for u, sha, _ in items})
                    continue
                except Exception:  # noqa: BLE001 - find the bad image: one at a time below
                    pass
            for unit, sha, attrs in items:
                try:
                    compute_one(store, context, unit, sha, attrs)
                    complete[unit.path] = {"source": sha}
                except Exception as exc:  # noqa: BLE001 - one image's failure must not stop the others
                    failed.append(unit_error(unit, stage, attrs.get("path", ""), exc))
    add_to_index(store, stage, plan_hashes[stage], complete)
    bad = {f["unit"] for f in failed}
    return {"done": [u.path for u in parsed if u.path not in bad], "failed": failed}
