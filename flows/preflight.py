"""A ``prefect deploy`` build step that checks the deployment settings before anything is deployed.

``prefect.yaml`` runs ``zsad.flows.preflight.check_deployment`` when deploying; its outputs fill the
deployments' parameters, so a deployment never carries a value that only fails at run time:
a missing folder, an unknown config, absent weights or a class without a stored threshold stop
``prefect deploy`` with a message saying what to set. Settings (environment variables):

* ``ZSAD_HOME``: the checkout the worker runs in (default: the current folder);
* ``ZSAD_STORE``: the Zarr store (default ``$ZSAD_HOME/zsad-store.zarr``);
* ``ZSAD_CONFIG``: ``paper``, ``tiny`` or a JSON config (default ``paper``);
* ``ZSAD_LINE_ROOT``, ``ZSAD_LINE_CLASS``: the inspection folder and its object class (nightly);
* ``ZSAD_THRESHOLD``: ``auto`` (stored, default) or a number; ``ZSAD_OUT``: results folder;
* ``ZSAD_LINE_REFERENCE`` (optional): a folder of known-good parts: the nightly flow then scores
  few-shot against them (its threshold is the few-shot variant's: ``zsad calibrate --reference``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zsad.stores import Unit

from .cluster import check_shared_store
from .configs import load_pipeline_config
from .score_files import one_variant
from .references import reference_name
from .command_requests import STORE


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if not value:
        raise ValueError(f"prefect deploy: set {name} (see docs/guide/nightly.md); it has no default")
    return value


def check_deployment(line: bool = False, **_: Any) -> dict[str, Any]:
    """Validate the settings and return them as step outputs (``{{ zsad.store }}``...)."""
    from zsad.tasks.plan import plan_stages
    home = Path(_env("ZSAD_HOME", os.getcwd())).resolve()
    if not (home / "flows" / "nightly.py").is_file():
        raise ValueError(f"prefect deploy: ZSAD_HOME={home} is not a zsad checkout (no flows/nightly.py)")
    store = _env("ZSAD_STORE", str(home / STORE))
    config = _env("ZSAD_CONFIG", "paper")
    plan = plan_stages(load_pipeline_config(config))  # unknown config or missing weights: a clear error
    dask_address, shared = os.environ.get("ZSAD_DASK_ADDRESS", ""), os.environ.get("ZSAD_SHARED_PATH", "") == "1"
    check_shared_store(store, dask_address or None, shared)  # a store the cluster's workers cannot see: now
    out = {"home": str(home), "store": store, "config": config, "dask_address": dask_address,
           "shared_path": shared, "out_dir": _env("ZSAD_OUT", str(home / "zsad-runs"))}
    if line:
        root = Path(_env("ZSAD_LINE_ROOT")).resolve()
        if not root.is_dir():
            raise ValueError(f"prefect deploy: ZSAD_LINE_ROOT={root} is not a folder")
        cls = _env("ZSAD_LINE_CLASS")
        reference = os.environ.get("ZSAD_LINE_REFERENCE") or None
        if reference is not None:
            reference = str(Path(reference).resolve())
            reference_name(reference, "line")  # a folder with images, or a clear error
        Unit("line", cls, "test", "x")  # a valid class name
        threshold = _env("ZSAD_THRESHOLD", "auto")
        if threshold == "auto":
            from zsad.stores import open_store

            from zsad.thresholds import AUTO

            from .thresholds import resolve_thresholds
            vh = plan.aggregate_hash(one_variant("seed", reference, "line"))
            resolve_thresholds(AUTO, None, open_store(store), vh, cls, store)  # raises, naming the fix
        else:
            try:
                float(threshold)
            except ValueError:
                raise ValueError(f"prefect deploy: ZSAD_THRESHOLD must be 'auto' or a number, got {threshold!r}") \
                    from None
        out.update(line_root=str(root), line_class=cls, threshold=threshold, line_reference=reference or "")
    return out
