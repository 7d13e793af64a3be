"""``zsad.tasks``: thin Prefect tasks, one module per stage: read keys from the store, call one
core function, write the result, return a ``StageResult`` (units done, ``Failure`` of the
others). ``runner`` holds what they share (``ShardJob``: store, plan and config of a run;
``run_stage``: skip what ``StageStore.pending`` says is done, isolate each image's failure);
``worker`` what a worker process keeps (models loaded once, the run it serves, a shard's image
records); ``failures`` the ``Failure`` record and its copies in the store; ``plan`` every
stage hash (from ``zsad.stages``); ``shard`` a few images through the declared per-image stages
(the unit a Dask worker is given); ``crops`` batches tiles for the encoders; ``aggregate``,
``fused`` and ``patches`` serve re-aggregation. Importing them starts no thread and loads no model.
"""
