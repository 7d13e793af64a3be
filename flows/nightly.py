"""Flow ``nightly``: precompute the new images of a folder (or data set) and re-score them.

Scheduled by ``prefect.yaml``; everything already in the store is skipped, so a nightly run
costs only the new images plus a cheap re-aggregation.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from .aggregate import aggregate
from .precompute import precompute


@flow(name="zsad-nightly")
def nightly(root: str, store: str = "zsad-store.zarr", dataset: str = "folder", name: str | None = None,
            config: str = "paper", classes: list[str] | None = None, variants: str = "seed",
            device: str | None = None) -> dict[str, Any]:
    pre = precompute(dataset=dataset, root=root, store=store, config=config, classes=classes, name=name,
                     device=device, progress=False)
    agg = aggregate(store=store, dataset=pre["dataset"], config=config, variants=variants, classes=classes)
    return {"precompute": pre, "aggregate": agg}
