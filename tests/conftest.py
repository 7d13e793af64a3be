"""Session fixtures: tiny random-weight models, a synthetic data set and its precomputed store,
an isolated Prefect home; the rule for tests that need a server.

Tiers (markers in pyproject.toml): ``slow`` (minutes of work), ``server`` (a real Prefect
server, moto's S3 server or a Dask cluster), ``browser`` (headless chromium). ``-m "not slow"``
is the everyday tier. A server or browser that cannot start skips its tests here, and fails
them where ``ZSAD_REQUIRE_SERVERS=1`` (``.ci/run`` sets it): CI never passes by skipping.
"""

from __future__ import annotations

from zsad.flows.command_requests import PrecomputeRequest
import os
import shutil
import tempfile

# Prefect must see these before it is imported anywhere in the session.
_PREFECT_HOME = tempfile.mkdtemp(prefix="zsad-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:  # xdist workers share the cores: one torch/BLAS
    os.environ.setdefault("OMP_NUM_THREADS", "1")               # thread each, in their subprocesses too

import pytest  # noqa: E402
from leftovers import mark_session, reap_leftovers  # noqa: E402
from requires import unavailable  # noqa: E402

_OWNS_MARK = mark_session()  # before any test starts a process: they all inherit the mark

from zsad.config import PipelineConfig  # noqa: E402
from zsad.datasets import SyntheticSpec, read_dataset, write_synthetic  # noqa: E402


# Modules measured at a minute or more of work on one core (docs/tests.md): they start first,
# so that under pytest-xdist no worker is left with a long module while the others are idle.
LONGEST_FIRST = ("test_portability", "test_modes", "test_s3", "test_cluster", "test_prefect_server", "test_crash",
                 "test_flows", "test_bad_inputs", "test_report_cli", "test_predict")


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core, at most 4 (about ten long modules; each worker holds
    torch, a Prefect API and a store of its own, ~1-2 GB)."""
    return max(1, min(os.cpu_count() or 1, 4))


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.stem
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: each module's tests keep their order


@pytest.hookimpl(trylast=True)  # after pytest-xdist has shut its workers down
def pytest_sessionfinish(session, exitstatus):
    """Fail the session if a process a test started is still running (it is killed now)."""
    if not _OWNS_MARK or hasattr(session.config, "workerinput"):
        return
    leaked = reap_leftovers()
    if leaked:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = ("\nprocesses started by the tests were still running at the end of the session (killed now):\n  "
                + "\n  ".join(leaked))
        if reporter:
            reporter.write_line(text, red=True)
        else:
            print(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
def precomputed_store(synthetic_root, tmp_path_factory):
    """The synthetic set precomputed once per session with the tiny models (no Prefect). Tests
    that only read it take it as is; tests that write take ``store_copy``."""
    from zsad.flows.precompute import run_precompute
    from zsad.tasks import worker
    store = str(tmp_path_factory.mktemp("precomputed") / "store.zarr")
    out = run_precompute(
        PrecomputeRequest(store=store, progress=False, name="synthetic"),
        samples=read_dataset("synthetic", synthetic_root),
        cfg=PipelineConfig.tiny(),
    )
    assert not out.failed, out.failed
    worker.forget_stores()
    return store


def copy_store(src: str, dest) -> str:
    """A private copy of the store ``src`` at ``dest`` (a local folder copy: seconds less than a
    precompute); this process's open stores forgotten."""
    from zsad.tasks import worker
    shutil.copytree(src, dest)
    worker.forget_stores()
    return str(dest)


@pytest.fixture(scope="module")
def calibrated_copy(precomputed_store, synthetic_root, tmp_path_factory):
    """A module's own copy of ``precomputed_store`` with FPR thresholds of class pill (the service's tests)."""
    from serving import calibrated_store
    return calibrated_store(copy_store(precomputed_store, tmp_path_factory.mktemp("calibrated") / "s.zarr"),
                            synthetic_root)


@pytest.fixture(scope="session")
def pills(synthetic_root) -> list:
    """The synthetic data set's pill test images, sorted."""
    from pathlib import Path
    return sorted((Path(synthetic_root) / "pill" / "test").rglob("*.png"))


@pytest.fixture()
def store_copy(precomputed_store, tmp_path):
    """A private copy of ``precomputed_store``."""
    return copy_store(precomputed_store, tmp_path / "store.zarr")


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect API for the whole session (8-17 s to start)."""
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=60):
        yield


SECRET = "zsad-test-secret-must-not-be-printed"  # the S3 secret: checked absent from every output


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """moto's S3 server in its own process on 127.0.0.1, for the session."""
    import importlib.util
    if any(importlib.util.find_spec(m) is None for m in ("moto", "flask", "s3fs")):
        unavailable("moto[server] and s3fs (the test extra) are not installed")
    from s3server import LocalS3
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    try:
        server = LocalS3(log=log).__enter__()
    except RuntimeError as exc:
        unavailable(f"{exc}; log: {log.read_text()[-2000:] if log.exists() else ''}")
    yield server
    server.__exit__()


@pytest.fixture()
def s3_env(s3, monkeypatch):
    """This process and its children reach the server the way a teammate would."""
    from zsad.tasks import worker
    env = s3.env()
    env["AWS_SECRET_ACCESS_KEY"] = SECRET  # moto accepts any
    for k, v in env.items():
        if k.startswith(("AWS_", "ZSAD_STORAGE")):
            monkeypatch.setenv(k, v)
    worker.forget_stores()
    yield env
    worker.forget_stores()
