"""Orchestration: the Prefect flows (``precompute``, ``aggregate``, ``evaluate``, ``nightly``,
``demo``), the ``zsad`` command line (``cli``; a flow command's options are generated from the
flow's signature by ``commands``, so the CLI and the flow are one declaration), variant names
resolved against a store (``configs``), predictions and thresholds (``predict``,
``thresholds``), the HTML report (``report``, ``report_parts``), cache maintenance (``cache``)
and ``cluster``: the same work on a ``dask.distributed`` cluster. Method logic is not here: it
is in ``zsad``."""
