"""Prefect flows (precompute, aggregate, evaluate, demo), the ``zsad`` command line, and
``flows.cluster``: the same work on a ``dask.distributed`` cluster."""
