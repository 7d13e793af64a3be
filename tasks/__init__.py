"""Thin Prefect tasks, one module per stage: read keys from the store, call one core function,
write the result, return keys. Models are loaded once per worker process (``tasks.runtime``);
``tasks.shard`` runs a few images through every stage (the unit a Dask worker is given)."""
