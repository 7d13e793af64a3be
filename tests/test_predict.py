"""``zsad predict``/``calibrate``, thresholds through the store, the nightly flow's results."""

from __future__ import annotations

from zsad.flows.command_requests import EvaluateRequest, NightlyRequest, PrecomputeRequest, PredictRequest
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zsad.flows.cache import list_stages
from zsad.flows.cli import main
from zsad.flows.thresholds import stored_thresholds
from zsad.tasks import worker
from zsad.tasks.plan import plan_stages
from zsad.config import AggregateConfig, PipelineConfig
from zsad.thresholds import f1_threshold

VH = plan_stages(PipelineConfig.tiny()).aggregate_hash(AggregateConfig())


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def line(tmp_path_factory, synthetic_root):
    """A flat inspection folder (2 good, 2 defective pills, one corrupt file, one text file) and a
    store calibrated on the data set's good pills."""
    base = tmp_path_factory.mktemp("line")
    folder = base / "images"
    folder.mkdir()
    pill = Path(synthetic_root) / "pill" / "test"
    for p in sorted(pill.rglob("*.png")):
        shutil.copy(p, folder / f"{p.parent.name}_{p.name}")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    store = str(base / "store.zarr")
    worker.forget_stores()
    assert main(["calibrate", "--good", str(pill / "good"), "--class", "pill", "--store", store, "--fpr", "0.01"]) == 0
    return folder, store


def test_calibrate_stores_fpr_thresholds_from_good_images(line):
    _, store = line
    t = stored_thresholds(worker.open_store(store), VH, "pill")
    assert set(t["image"]) == {"fpr"} and set(t["pixel"]) == {"fpr"}
    assert t["image"]["fpr"].fpr == 0.01 and t["image"]["fpr"].n_images == 2


@pytest.mark.slow
def test_predict_folder_with_a_corrupt_file(line, tmp_path, capsys):
    folder, store = line
    out = tmp_path / "out"
    code = main(["predict", str(folder), "--class", "pill", "--store", store, "--out", str(out)])
    assert code == 1  # done, but one file failed
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "not a readable image" in captured.err
    assert "Traceback" not in captured.err
    rows = _rows(out / "scores.csv")
    scored = [r for r in rows if r["status"] == "scored"]
    errors = [r for r in rows if r["status"] == "error"]
    assert len(scored) == 4 and len(errors) == 1 and errors[0]["path"].endswith("broken.png")
    threshold = stored_thresholds(worker.open_store(store), VH, "pill")["image"]["fpr"].value
    for r in scored:
        assert float(r["threshold"]) == threshold and r["threshold_source"].startswith("stored fpr")
        assert r["decision"] == ("anomalous" if float(r["sample_score"]) >= threshold else "normal")
        png = Path(r["heatmap"])
        assert png.is_file() and Image.open(png).size[0] > 3 * 128  # three panels
    assert "scored (" in captured.out and "broken.png" in captured.out  # the printed table


def test_predict_second_run_computes_nothing(line, tmp_path):
    folder, store = line
    from zsad.flows.predict import run_predict
    first = PredictRequest(paths=[str(folder)], class_name="pill", store=store, out=str(tmp_path / "a"), echo=False,
                           progress=False)
    run_predict(first)
    writes = worker.open_store(store).writes
    again = run_predict(first.replace(out=str(tmp_path / "b"), heatmaps=False))
    assert worker.open_store(store).writes == writes and again["n_scored"] == 4


def test_threshold_auto_without_a_stored_one_names_the_commands(synthetic_root, tmp_path, capsys):
    store = str(tmp_path / "empty.zarr")
    good = str(Path(synthetic_root) / "pill" / "test" / "good")
    assert main(["predict", good, "--class", "pill", "--store", store]) == 2
    err = capsys.readouterr().err
    assert "no stored threshold for class 'pill'" in err and "zsad calibrate" in err and "zsad evaluate" in err
    assert not (Path(store) / "clipseg").exists()  # it failed before any model ran


def test_explicit_threshold_and_bad_threshold(line, tmp_path, capsys):
    folder, store = line
    good = str(folder / "good_000.png")
    assert main(["predict", good, "--class", "pill", "--store", store, "--threshold", "0", "--pixel-threshold",
                 "none", "--out", str(tmp_path)]) == 0
    row = _rows(tmp_path / "scores.csv")[0]
    assert row["decision"] == "anomalous" and row["threshold_source"] == "given" and row["pixel_threshold"] == ""
    with pytest.raises(SystemExit) as exit_:  # a usage error, before anything runs
        main(["predict", good, "--class", "pill", "--store", store, "--threshold", "high"])
    assert exit_.value.code == 2
    assert "--threshold must be auto, f1, fpr, none or a number" in capsys.readouterr().err
    for bad in ("inf", "nan"):
        with pytest.raises(SystemExit):
            main(["predict", good, "--class", "pill", "--store", store, "--threshold", bad])
        assert "finite" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_stores_f1_thresholds_that_predict_uses(prefect_harness, synthetic_root, tmp_path):
    from zsad.flows.evaluate import run_evaluate
    from zsad.flows.prefect_flows import precompute
    from zsad.stores.views import stage_table
    worker.forget_stores()
    store = str(tmp_path / "s.zarr")
    precompute(
        PrecomputeRequest(dataset="synthetic", root=str(synthetic_root), store=store, config="tiny", progress=False)
    )
    results = run_evaluate(EvaluateRequest(store=store, dataset="synthetic", out_dir=str(tmp_path / "res"), echo=False))
    table = stage_table(store, "synthetic", VH, plan_stages(PipelineConfig.tiny()).hashes["image"])
    pill = table.where(table.class_name == "pill", drop=True)
    expected = f1_threshold(pill["label"].values, pill["sample_score"].values)
    stored = stored_thresholds(worker.open_store(store), VH, "pill")
    assert stored["image"]["f1"].value == expected and stored["image"]["f1"].dataset == "synthetic"
    assert {"f1", "fpr"} <= set(stored["image"]) and "f1" in stored["pixel"]
    written = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert written[VH]["thresholds"]["pill"]["image_f1"] == expected
    assert "threshold_image_f1" in (tmp_path / "res" / "metrics.csv").read_text().splitlines()[0]
    assert results[VH].thresholds["pill"]["image_f1"] == expected
    # predict on the same images with --threshold auto takes the F1 threshold (auto prefers it)
    from zsad.flows.predict import run_predict
    out = run_predict(PredictRequest(paths=[str(Path(synthetic_root) / "pill" / "test")], class_name="pill",
                                     store=store, out=str(tmp_path / "p"), echo=False, progress=False, heatmaps=False))
    assert out["threshold"] == expected and out["threshold_source"].startswith("stored f1")


def test_predict_image_in_memory_matches_the_cached_score(line, tiny_models, tiny_cfg, tmp_path):
    from zsad.flows.predict import run_predict
    from zsad.datasets import load_image
    from zsad.predict import predict_image
    folder, store = line
    path = folder / "scratch_000.png"
    out = run_predict(
        PredictRequest(
            paths=[str(path)],
            class_name="pill",
            store=store,
            out=str(tmp_path),
            echo=False,
            progress=False,
            heatmaps=False,
        )
    )
    cached = out["rows"][0]
    p = predict_image(load_image(path), "pill", tiny_models, tiny_cfg, threshold=cached["threshold"],
                      pixel_threshold=cached["pixel_threshold"])
    assert p.sample_score == cached["sample_score"] and p.decision == cached["decision"]
    assert p.mask_hw.shape == (128, 128) and p.mask_hw.dtype == bool
    assert p.panel_png().startswith(b"\x89PNG")


@pytest.mark.slow
def test_nightly_scores_only_new_images_and_publishes_artifacts(prefect_harness, line, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from zsad.flows.nightly import nightly
    src, store = line
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name in ("good_000.png", "scratch_000.png", "broken.png"):
        shutil.copy(src / name, folder / name)
    first = nightly(NightlyRequest(root=str(folder), class_name="pill", store=store, config="tiny",
                                  out_dir=str(tmp_path / "runs")))
    assert first["n_new"] == 3 and first["n_scored"] == 2 and first["n_failed"] == 1
    assert Path(first["scores_csv"]).is_file() and len(_rows(Path(first["scores_csv"]))) == 3
    json.dumps(first)  # a small JSON-able summary
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(folder / "new.png")
    second = nightly(NightlyRequest(root=str(folder), class_name="pill", store=store, config="tiny",
                                   out_dir=str(tmp_path / "runs")))
    assert second["n_new"] == 2 and second["n_scored"] == 1  # new.png, and broken.png again (still broken)
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["zsad-nightly-line", "zsad-nightly-line-summary"])))
    kinds = {a.type for a in arts}
    assert kinds == {"table", "markdown"}
    summary = next(a for a in arts if a.type == "markdown" and "broken.png" in a.data)
    assert "flagged anomalous" in summary.data and "Highest scores" in summary.data


@pytest.mark.slow
def test_unlabelled_folder_precompute_report_gallery_and_evaluate_message(line, tmp_path, capsys):
    folder, store = line
    args = ["--store", store, "--dataset", "shelf"]
    assert main(["precompute", "--dataset", "folder", "--root", str(folder), "--name", "shelf", "--classes", "pill",
                 "--store", store]) == 1  # the other images done, broken.png named
    err = capsys.readouterr().err
    assert "broken.png" in err and "4 images done, 1 failed" in err and "Traceback" not in err
    assert main(["report", *args, "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "ranked by anomaly score" in html and html.count("<figure>") == 4
    assert "Failed images (1)" in html and "broken.png" in html and "not a readable image" in html
    listed = {r["stage"]: r["units"] for r in list_stages(store)}
    assert listed["errors"] >= 1  # zsad cache list shows the failure records
    assert main(["evaluate", *args, "--out", str(tmp_path / "res")]) == 2
    assert "have no labels" in capsys.readouterr().err
