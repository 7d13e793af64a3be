"""zsad core: the seed method (VAND 2023, 3rd place) as pure functions on numpy/torch arrays.

``pipeline`` scores an image (``score_image``) or a class's batch in any mode (``score_images``);
its steps are ``foreground``, ``tiling``, ``prompts``, ``scoring``, ``pixelmaps`` and
``aggregate``, with ``patches`` (few-shot and mutual distances) and ``shots`` (drawing
references, the leak check). ``config`` holds the pipeline config and the stage hash,
``variants`` the aggregation variants (``AggregateConfig`` with its ``FewShot``/``Mutual``
patch mode) and their labels, ``sweep`` the sweep grammar; ``metrics``, ``bins`` and
``evaluation`` measure; ``models`` and ``weights`` build the networks from local files;
``datasets`` reads VisA, MVTec AD and plain folders. This package imports neither Prefect nor
Zarr; orchestration lives in ``flows``/``tasks`` and caching in ``stores``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zsad")  # the installed metadata: one version, pyproject.toml's
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"
