"""Prefect flows (precompute, aggregate, evaluate, demo) and the ``zsad`` command line."""
