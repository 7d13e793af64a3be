"""``zsad.flows``: orchestration. One frozen request per command (``command_requests``, its
fields declared with ``request_fields``) and the command table (``commands``: each command's
request and the function or flow serving it; its options are generated from the request's
fields) behind the ``zsad`` command line (``cli``); the Prefect flows (``precompute``,
``aggregate``, ``evaluate``, ``nightly``, ``demo``), each taking its request as its one
parameter; variant names resolved against a store (``configs``), predictions and thresholds
(``predict``, ``thresholds``), the HTML report (``report``, ``report_parts``), cache
maintenance (``cache``) and ``cluster``: the same work on a ``dask.distributed`` cluster.
Method logic is not here: it is in ``zsad``.

Prefect loads a deployment's entrypoint (``flows/nightly.py:nightly``) with this folder at the
front of ``sys.path``, so no module here may share a name with an installed or standard module
(``requests`` would shadow the HTTP library): ``tests/test_install.py`` checks it."""
