"""zsad core: the seed method (VAND 2023, 3rd place) as pure functions on numpy/torch arrays.

This package imports neither Prefect nor Zarr; orchestration lives in ``flows``/``tasks``
and caching in ``stores``.
"""

__version__ = "0.1.0"
