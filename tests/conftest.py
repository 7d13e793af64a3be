"""Session fixtures: tiny random-weight models, a synthetic data set, an isolated Prefect home."""

from __future__ import annotations

import os
import tempfile

# Prefect must see these before it is imported anywhere in the session.
_PREFECT_HOME = tempfile.mkdtemp(prefix="zsad-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from zsad.config import PipelineConfig  # noqa: E402
from zsad.datasets import SyntheticSpec, read_dataset, write_synthetic  # noqa: E402


@pytest.fixture(scope="session")
def tiny_cfg() -> PipelineConfig:
    return PipelineConfig.tiny()


@pytest.fixture(scope="session")
def tiny_models(tiny_cfg):
    from zsad.pipeline import Models
    return Models.load(tiny_cfg)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    spec = SyntheticSpec(image_size=128, n_good=2, n_per_defect=1, n_train=0, defects=("scratch", "stain"))
    return write_synthetic(root, spec)


@pytest.fixture(scope="session")
def synthetic_samples(synthetic_root):
    return read_dataset("synthetic", synthetic_root)


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect API for the whole session (8-17 s to start)."""
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=60):
        yield
