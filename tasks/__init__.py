"""Thin Prefect tasks, one module per stage: read keys from the store, call one core function,
write the result, return keys. ``runtime`` keeps the per-process state (open stores, models
loaded once per worker) and ``run_stage`` (skip what ``StageStore.pending`` says is done,
isolate each image's failure); ``crops.run_tile_stage`` batches tiles for the encoders;
``plan`` names each stage's hash; ``shard`` runs a few images through every stage (the unit a
Dask worker is given); ``aggregate``, ``fused`` and ``patches`` serve re-aggregation."""
