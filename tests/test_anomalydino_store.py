"""AnomalyDINO from the store (the ``dino-tiny`` config): which images get tokens, the cached
scores against a brute force that decodes, rotates, encodes and searches from scratch, the
batched zero-shot variant against its equation, a second run computing nothing, clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from zsad.anomalydino import ANGLES
from zsad.config import ModelSpec
from zsad.datasets import SyntheticSpec, read_dataset, write_synthetic
from zsad.flows.aggregate import run_variants
from zsad.flows.command_requests import AggregateRequest, PrecomputeRequest
from zsad.flows.configs import load_pipeline_config
from zsad.flows.precompute import run_precompute
from zsad.models import build_dino
from zsad.stores import StageStore, Unit, unit_key
from zsad.stores.schema import DINO_TOKENS
from zsad.sweep import variant_grid
from zsad.tasks.plan import plan_stages

pytestmark = pytest.mark.slow  # a tiny precompute of its own

CONFIG = "dino-tiny"  # AnomalyDINO's tokens of a random tiny DINOv2 at smaller edge 56, first 4 references
DINO_STORE: list[str] = []  # the module's store, once made
DINO_ROOT: list[str] = []  # and its data set's folder


@pytest.fixture(scope="module")
def dino_store(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("dino-data"),
                           SyntheticSpec(image_size=96, n_good=2, n_per_defect=1, n_train=6, defects=("scratch",)))
    store = str(tmp_path_factory.mktemp("dino") / "store.zarr")
    for split in ("test", "train"):
        out = run_precompute(PrecomputeRequest(store=store, progress=False, name="synthetic", config=CONFIG,
                                               split=split), samples=read_dataset("synthetic", root, split=split))
        assert not out.failed, out.failed
    DINO_STORE[:], DINO_ROOT[:] = [store], [str(root)]
    return store


def _plan():
    return plan_stages(load_pipeline_config(CONFIG))


def _train_by_name(st, plan, cls):
    units = st.list_units("image", plan.hashes["image"], "synthetic", [cls], split="train")
    paths = {u: st.read_attrs(unit_key("image", plan.hashes["image"], u))["path"] for u in units}
    return sorted(units, key=lambda u: paths[u].rsplit("/", 1)[-1]), paths


def test_tokens_for_tests_and_the_first_references_by_file_name_with_every_rotation(dino_store):
    st, plan = StageStore(dino_store), _plan()
    h = plan.hashes["dino_tokens"]
    for cls in ("pill", "washer"):
        train, _ = _train_by_name(st, plan, cls)
        assert len(train) == 6
        held = st.list_units("dino_tokens", h, "synthetic", [cls], split="train")
        assert held == sorted(train[:4])  # AnomalyDinoConfig.references = 4
        tokens = st.read_array(unit_key("dino_tokens", h, train[0]), DINO_TOKENS)
        assert tokens.shape == (len(ANGLES), 16, 32) and tokens.dtype == np.float32
        tests = st.list_units("image", plan.hashes["image"], "synthetic", [cls], split="test")
        assert all(st.read_array(unit_key("dino_tokens", h, u), DINO_TOKENS).shape == (1, 16, 32) for u in tests)


def brute_scores(st, plan, cls, shots, seed, rotation):
    """Each test image's score from scratch: OpenCV decode, the sorted slice of references, the
    rotations, the tiny DINOv2, 1 - cos to every reference patch, the top 1 % (max)."""
    enc = build_dino(ModelSpec("dino", "tiny-dinov2"))
    train, paths = _train_by_name(st, plan, cls)

    def read(path):
        return cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def rotate(img, angle):
        m = cv2.getRotationMatrix2D(tuple(np.array(img.shape[1::-1]) / 2), angle, 1.0)
        return cv2.warpAffine(img, m, img.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_DEFAULT)
    bank = []
    for u in train[seed * shots:(seed + 1) * shots]:
        img = read(paths[u])
        for angle in (ANGLES if rotation else (0,)):
            bank.append(enc.encode_patches(rotate(img, angle) if rotation else img, 56)[0])
    bank = np.concatenate(bank).astype(np.float64)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    out = {}
    for u in st.list_units("image", plan.hashes["image"], "synthetic", [cls], split="test"):
        t = enc.encode_patches(read(st.read_attrs(unit_key("image", plan.hashes["image"], u))["path"]), 56)[0]
        t = t.astype(np.float64) / np.linalg.norm(t, axis=1, keepdims=True)
        out[u] = float((1 - t @ bank.T).min(axis=1).max())  # 16 patches: int(0.16) = 0, the maximum
    return out


@pytest.mark.parametrize("shots,seed,rotation", [(1, 0, True), (2, 1, False)])
def test_cached_scores_equal_the_brute_force(dino_store, shots, seed, rotation):
    agg = variant_grid(f"mode=anomalydino;shots={shots};shot_seed={seed};rotation={str(rotation).lower()}")[0]
    run_variants(AggregateRequest(store=dino_store, config=CONFIG, variants=f"mode=anomalydino;shots={shots};"
                                  f"shot_seed={seed};rotation={str(rotation).lower()}", evaluate=True))
    st, plan = StageStore(dino_store), _plan()
    vh = plan.aggregate_hash(agg)
    for cls in ("pill", "washer"):
        for unit, expected in brute_scores(st, plan, cls, shots, seed, rotation).items():
            got = st.read_attrs(unit_key("aggregate", vh, unit))["sample_score"]
            assert got == pytest.approx(expected, abs=2e-6)


def test_a_second_run_computes_nothing(dino_store):
    sweep = "mode=anomalydino,anomalydino-batched;quantile=0.1"
    run_variants(AggregateRequest(store=dino_store, config=CONFIG, variants=sweep))
    again = run_variants(AggregateRequest(store=dino_store, config=CONFIG, variants=sweep))
    assert again and all(o.written == 0 for o in again.values())


def test_batched_scores_follow_the_official_equation(dino_store):
    run_variants(AggregateRequest(store=dino_store, config=CONFIG, variants="mode=anomalydino-batched;quantile=0.2"))
    st, plan = StageStore(dino_store), _plan()
    vh = plan.aggregate_hash(variant_grid("mode=anomalydino-batched;quantile=0.2")[0])
    tests = st.list_units("image", plan.hashes["image"], "synthetic", ["pill"], split="test")
    tokens = {u: st.read_array(unit_key("dino_tokens", plan.hashes["dino_tokens"], u), DINO_TOKENS)[0].astype(np.float64)
              for u in tests}
    for u in tests:
        others = np.concatenate([t for v, t in tokens.items() if v != u])
        a = tokens[u] / np.linalg.norm(tokens[u], axis=1, keepdims=True)
        b = others / np.linalg.norm(others, axis=1, keepdims=True)
        d = 1 - a @ b.T
        k = int(0.2 * len(others))
        kth = np.sort(d, axis=1)[:, k - 1:k]
        per_patch = np.array([row[row < q].mean() for row, q in zip(d, kth[:, 0])])
        got = st.read_attrs(unit_key("aggregate", vh, u))["sample_score"]
        assert got == pytest.approx(per_patch.max(), abs=2e-6)


def test_more_shots_than_the_stage_holds_is_a_clear_error(dino_store):
    with pytest.raises(ValueError, match="needs train images 4..7 by file name; 6 exist and the dino_tokens stage "
                                         "holds the first 4"):
        run_variants(AggregateRequest(store=dino_store, config=CONFIG, variants="mode=anomalydino;shots=4;shot_seed=1"))


def test_the_official_masking_table_applies_by_data_set_name():
    from zsad.anomalydino import official_masking
    masked = {c for c in ("bottle", "capsule", "hazelnut", "pill", "screw", "toothbrush", "zipper")
              if official_masking("mvtec", c)}
    assert masked == {"capsule", "hazelnut", "pill", "screw", "toothbrush"}
    assert official_masking("VisA", "pcb4") and not official_masking("synthetic", "pill")


def test_unit_of_another_batch_is_refused():
    from zsad.tasks.dino_scores import DinoContext
    with pytest.raises(ValueError, match="not in the AnomalyDINO batch"):
        DinoContext("d", distances={}).source_of(Unit("synthetic", "pill", "test", "x"))


def test_musc_runs_on_dinov2_tokens_from_the_same_cache(dino_store, tmp_path):
    """musc-dino-tiny: only MuSc's tokens are new (a tiny DINOv2 at 84 px, MuSc's zero class
    token); MuSc's variants score from them."""
    from zsad.stores.schema import TOKENS
    root = StageStore(dino_store).read_attrs(unit_key("image", _plan().hashes["image"], _tests("pill")[0]))["path"]
    samples = read_dataset("synthetic", root.split("/pill/")[0])
    out = run_precompute(PrecomputeRequest(store=dino_store, progress=False, name="synthetic", config="musc-dino-tiny"),
                         samples=samples)
    assert not out.failed and out.units_written == len(samples)  # one token unit per test image, nothing else
    plan = plan_stages(load_pipeline_config("musc-dino-tiny"))
    tokens = StageStore(dino_store).read_array(unit_key("musc_tokens", plan.hashes["musc_tokens"], _tests("pill")[0]),
                                               TOKENS)
    assert tokens.shape == (2, 37, 32) and not tokens[:, 0].any()
    res = run_variants(AggregateRequest(store=dino_store, config="musc-dino-tiny", variants="mode=musc", evaluate=True))
    scores = [r.sample_score for o in res.values() for rows in o.rows.values() for r in rows]
    assert len(scores) == 6 and np.isfinite(scores).all()


def _tests(cls, store=None):
    st, plan = StageStore(store or DINO_STORE[0]), _plan()
    return st.list_units("image", plan.hashes["image"], "synthetic", [cls], split="test")


def test_few_shot_predict_on_a_store_without_normal_images_names_the_fix(synthetic_root, tmp_path):
    """AnomalyDINO few-shot on a store holding no normal images of the class: the error says what
    it needs and both ways to give it (the CLI prints it and exits 2)."""
    import shutil
    from pathlib import Path

    from zsad.flows.command_requests import PredictRequest
    from zsad.flows.predict import run_predict
    folder = tmp_path / "line"
    folder.mkdir()
    shutil.copy(sorted((Path(synthetic_root) / "pill" / "test").rglob("*.png"))[0], folder / "a.png")
    request = PredictRequest(paths=(str(folder),), class_name="pill", store=str(tmp_path / "s.zarr"), config=CONFIG,
                             variant="mode=anomalydino", threshold="none", out=str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"needs train images 0\.\.0 by file name; 0 exist.*--reference DIR"):
        run_predict(request)


def test_few_shot_predict_with_a_reference_folder_is_anomalydino_against_that_folder(dino_store, tmp_path):
    """``predict --variant mode=anomalydino --reference DIR`` scores AnomalyDINO (not another
    few-shot detector) with its ``shots`` references drawn from DIR by sorted file name: with
    the class's ``train/good`` as DIR, each image's score is the brute force's."""
    from pathlib import Path

    from conftest import copy_store
    from zsad.flows.command_requests import PredictRequest
    from zsad.flows.predict import run_predict
    store = copy_store(dino_store, tmp_path / "s.zarr")
    root = Path(DINO_ROOT[0]) / "pill"
    out = run_predict(PredictRequest(paths=(str(root / "test"),), class_name="pill", store=store, config=CONFIG,
                                     variant="mode=anomalydino", reference=str(root / "train" / "good"),
                                     threshold="none", out=str(tmp_path / "out"), echo=False))
    st, plan = StageStore(store), _plan()
    expected = {st.read_attrs(unit_key("image", plan.hashes["image"], u))["path"]: v
                for u, v in brute_scores(st, plan, "pill", 1, 0, True).items()}
    rows = out["rows"]
    assert len(rows) == len(expected) and all(r["variant"].startswith("anomalydino1@predict-ref-") for r in rows)
    for row in rows:
        assert row["sample_score"] == pytest.approx(expected[row["path"]], abs=2e-6), row["path"]
