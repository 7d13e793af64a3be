"""``zsad.serve``: the line service. ``zsad serve`` (``run``: uvicorn with its limits; ``app``:
the FastAPI application; ``body``, ``fields``, ``guard``, ``web``, ``page``: reading a request,
its typed fields, the host and cross-site guard, errors and metrics, the review page) and
``zsad watch`` (``watch``), both handing jobs to one ``inspector.Inspector`` (the scoring step
``predict`` runs, ``zsad.flows.score_files``) through a ``batcher.Batcher``, and verdicts to the
``sinks``. Nothing here imports Prefect (``tests/test_layers.py`` checks it)."""
