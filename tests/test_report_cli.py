"""Report sections, CLI commands (cache, weights, errors)."""

from zsad.flows.command_requests import AggregateRequest, EvaluateRequest, ReportRequest
import json
import shutil
import subprocess

import pytest

from zsad.flows.cli import main
from requires import unavailable
from zsad.tasks import worker
from zsad.tasks.plan import plan_stages


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory, precomputed_store):
    """The session's precomputed synthetic store, copied for this module (its tests add variants)."""
    worker.forget_stores()
    store = tmp_path_factory.mktemp("run") / "store.zarr"
    shutil.copytree(precomputed_store, store)
    return str(store)


@pytest.mark.slow
def test_report_has_every_section(cached_run, tmp_path):
    from zsad.flows.report import build_report
    path = build_report(ReportRequest(store=cached_run, dataset="synthetic", config="tiny", out=str(tmp_path / "rep")))
    html = path.read_text()
    for needle in ("Sample level", "Pixel level", "All metrics", "Curves and score histograms",
                   "Best and worst images", "highest-scoring anomalous (", "lowest-scoring anomalous (",
                   "highest-scoring normal (", "data:image/png;base64,"):
        assert needle in html, needle
    assert html.count("<figure>") == 2 * 3 and html.count('<img class="chart"') == 2  # 2 classes
    for needle in ("How these numbers were made", "<td class=\"text\">clipseg</td>", "map_dtype", "logit8",
                   "Library versions", "open_clip_torch", "segment-anything"):
        assert needle in html, needle
    assert "{{" not in html and "{%" not in html  # the template rendered whole
    assert len(list((tmp_path / "rep" / "examples").rglob("*.png"))) == 6
    assert len(list((tmp_path / "rep" / "charts").glob("*.png"))) == 2


SWEEP = "fusion=harmonic,geometric;top_fraction=0.25,1"


def _ranked_hashes(html: str) -> list[str]:
    import re
    table = html.split('id="per-class"')[0]
    return re.findall(r'title="zsad report --variant ([0-9a-f]{16})"', table)


@pytest.mark.slow
def test_variants_page_ranks_every_variant_best_first(cached_run, tmp_path):
    from zsad.flows.evaluate import run_evaluate
    from zsad.flows.report import build_report
    page = build_report(
        ReportRequest(store=cached_run, dataset="synthetic", config="tiny", out=str(tmp_path / "v"), variants=SWEEP)
    )
    assert page.name == "variants.html" and (tmp_path / "v" / "report.html").is_file()
    html = page.read_text()
    results = run_evaluate(
        EvaluateRequest(
            store=cached_run,
            dataset="synthetic",
            config="tiny",
            variants=SWEEP,
            out_dir=str(tmp_path / "res"),
            echo=False,
        )
    )
    mean = {vh: r.metrics["mean"] for vh, r in results.items()}
    expected = sorted(mean, key=lambda vh: (-mean[vh]["sample_f1_max"], -mean[vh]["pixel_f1_max"]))
    assert _ranked_hashes(html) == expected and len(expected) == 4  # every variant, best first
    assert html.count("<tr data-class=") == 4 * 2  # per class: every variant x both classes
    best = expected[0]
    assert f"<code>{best}</code>" in (tmp_path / "v" / "report.html").read_text()  # the full report is the best's
    assert f'{100 * mean[best]["sample_f1_max"]:.1f}</td>' in html
    # from evaluate's metrics.json: same ranking, no recomputation of the other variants' metrics
    from_results = ReportRequest(store=cached_run, dataset="synthetic", config="tiny", out=str(tmp_path / "v2"),
                                 results=str(tmp_path / "res" / "metrics.json"))
    again = build_report(from_results)
    assert _ranked_hashes(again.read_text()) == expected
    bad = json.loads((tmp_path / "res" / "metrics.json").read_text())
    bad[best]["config"]["fusion"] = "arithmetic"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="another pipeline config"):
        build_report(from_results.replace(out=str(tmp_path / "v3"), results=str(tmp_path / "bad.json")))


@pytest.mark.slow
def test_report_one_variant_by_hash_or_label(cached_run, tmp_path):
    from zsad.flows.configs import variant_grid, variant_label
    from zsad.flows.report import build_report
    from zsad.config import PipelineConfig
    arithmetic = variant_grid("fusion=arithmetic")[0]  # in no other test's sweep
    vh = plan_stages(PipelineConfig.tiny()).aggregate_hash(arithmetic)
    by_label = build_report(
        ReportRequest(
            store=cached_run,
            dataset="synthetic",
            config="tiny",
            out=str(tmp_path / "a"),
            variants=variant_label(arithmetic),
        )
    )
    assert by_label.name == "report.html" and f"<code>{vh}</code>" in by_label.read_text()
    assert ("aggregate", vh) not in {(s, h) for s, h, _ in worker.open_store(cached_run).stages()}  # wrote nothing
    from zsad.flows.aggregate import run_variants
    run_variants(
        AggregateRequest(store=cached_run, dataset="synthetic", config="tiny", configs=tuple([arithmetic]))
    )  # now stored: a hash prefix names it
    by_hash = build_report(
        ReportRequest(store=cached_run, dataset="synthetic", config="tiny", out=str(tmp_path / "b"), variants=vh[:8])
    )
    assert f"<code>{vh}</code>" in by_hash.read_text()
    with pytest.raises(ValueError, match="neither a stored variant's hash nor a label"):
        build_report(
            ReportRequest(
                store=cached_run,
                dataset="synthetic",
                config="tiny",
                out=str(tmp_path / "c"),
                variants="0123456789abcdef",
            )
        )


def test_prune_single_variants_keeps_thresholds(cached_run, tmp_path, capsys):
    from zsad.flows.evaluate import run_evaluate
    from zsad.stores import StageStore
    from zsad.config import AggregateConfig, PipelineConfig
    store = str(tmp_path / "copy.zarr")
    shutil.copytree(cached_run, store)
    worker.forget_stores()
    run_evaluate(
        EvaluateRequest(
            store=store,
            dataset="synthetic",
            config="tiny",
            variants="fusion=harmonic,geometric",
            out_dir=str(tmp_path / "r"),
            echo=False,
        )
    )
    seed = plan_stages(PipelineConfig.tiny()).aggregate_hash(AggregateConfig())
    geo = plan_stages(PipelineConfig.tiny()).aggregate_hash(AggregateConfig(fusion="geometric"))
    assert main(["cache", "prune", "--store", store, "--variants", "fusion=geometric", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["would_delete"] == [f"aggregate/{geo}"]
    assert main(["cache", "prune", "--store", store, "--variants", seed[:10]]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == [f"aggregate/{seed}"]
    groups = {(s, h) for s, h, _ in StageStore(store).stages()}
    assert ("aggregate", seed) not in groups and ("aggregate", geo) in groups and ("thresholds", seed) in groups
    assert main(["cache", "prune", "--store", store, "--keep", "tiny"]) == 0  # the calibration outlives its scores
    assert json.loads(capsys.readouterr().out)["deleted"] == []
    assert main(["cache", "prune", "--store", store, "--variants", geo, "--with-thresholds"]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == [f"aggregate/{geo}", f"thresholds/{geo}"]
    assert main(["cache", "prune", "--store", store, "--variants", "nope"]) == 2


@pytest.mark.slow
@pytest.mark.browser
def test_report_renders_in_headless_chromium(cached_run, tmp_path):
    if shutil.which("chromium") is None:
        unavailable("Debian's chromium is not installed")
    from zsad.flows.report import build_report
    path = build_report(ReportRequest(store=cached_run, dataset="synthetic", config="tiny", out=str(tmp_path / "rep")))
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2400",
                    path.as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image
    import numpy as np
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (2400, 1200)
    # the heatmap panels were drawn: a text-only or broken-image page has almost no saturated pixels
    saturation = img.max(axis=2).astype(int) - img.min(axis=2)
    assert (saturation > 80).mean() > 0.02, (saturation > 80).mean()
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", path.as_uri()],
                         check=True, capture_output=True, timeout=120, text=True).stdout
    assert dom.count("<img") == 6 + 2 and dom.count("<figure>") == 6  # 3 four-panel figures and a chart per class
    page = build_report(
        ReportRequest(store=cached_run, dataset="synthetic", config="tiny", out=str(tmp_path / "var"), variants=SWEEP)
    )
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile3'}", "--dump-dom", page.as_uri()],
                         check=True, capture_output=True, timeout=120, text=True).stdout
    ranking, per_class = dom.split('id="per-class"')
    assert ranking.count("<tr class=") == 4 and per_class.count("<tr data-class=") == 8  # 4 variants, 2 classes
    assert dom.count("<img") == 1 and "<select id=\"class-filter\">" in dom  # the small multiples, the filter


def test_cli_cache_list_size_prune(cached_run, capsys, tmp_path):
    assert main(["cache", "list", "--store", cached_run]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["stage"] for r in rows} >= {"isnet", "sam", "clipseg", "clip_text"}
    assert all(r["units"] > 0 for r in rows if r["stage"] != "image") and all(r["bytes"] > 0 for r in rows)
    assert main(["cache", "size", "--store", cached_run]) == 0
    size = json.loads(capsys.readouterr().out)
    by_bytes = [r["bytes"] for r in size["by_stage"]]
    assert by_bytes == sorted(by_bytes, reverse=True) and size["total_bytes"] == sum(by_bytes)
    assert size["total"].endswith(("KB", "MB")) and all(r["size"][-2:] in ("KB", "MB", " B") for r in size["by_stage"])
    cfg = tmp_path / "other.json"
    from zsad.config import PipelineConfig, TilingConfig, to_jsonable
    import dataclasses
    cfg.write_text(
        json.dumps(to_jsonable(dataclasses.replace(PipelineConfig.tiny(), tiling=TilingConfig(min_tile=64))))
    )
    assert main(["cache", "prune", "--store", cached_run, "--keep", str(cfg), "--dry-run"]) == 0
    doomed = json.loads(capsys.readouterr().out)["would_delete"]
    stages = [p.split("/")[0] for p in doomed]
    # the stages downstream of tiling, plus any aggregate variant (and its thresholds) that read them
    # (fused maps made from those tiles go too, when an earlier aggregation wrote any)
    assert sorted({s for s in stages if s not in ("aggregate", "thresholds", "fused")}) == ["clip_image", "clipseg",
                                                                                           "tiles"]
    assert main(["cache", "prune", "--store", cached_run, "--keep", "tiny"]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == []
    assert main(["cache", "prune", "--store", cached_run]) == 2  # no --keep: refuses
    assert "refusing to delete everything" in capsys.readouterr().err


def test_cli_weights_list_and_bad_config(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ZSAD_WEIGHTS_DIR", str(tmp_path))
    assert main(["weights", "list"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["file"] for r in rows} >= {"sam_vit_h_4b8939.pth", "isnet-general-use.pth", "open_clip_model.safetensors",
                                          "vit_b_16_plus_240-laion400m_e32-699c4b84.pt", "dinov2_vitl14_pretrain.pth",
                                          "dinov2_vits14_pretrain.pth", "dino_vitbase16_pretrain.pth"}
    assert {r["key"] for r in rows} >= {"dino/dinov2_vitl14/hf", "dino/dino_vitb16/hf"}  # the snapshots as well
    assert all(str(tmp_path) in r["looked_in"] for r in rows)
    assert main(["aggregate", "--store", str(tmp_path / "s.zarr"), "--config", "nope.json"]) == 2
    assert "dino-tiny nor an existing JSON file" in capsys.readouterr().err
    assert main(["weights", "list", "--config", "musc-dinov2-l518"]) == 0  # what one config's models need
    assert [r["key"] for r in json.loads(capsys.readouterr().out)] == [
        "isnet/isnet/general-use", "sam/vit_h/sa-1b", "clip/ViT-B-16-plus-240/laion400m_e32", "clipseg/rd64-refined/CIDAS",
        "dino/dinov2_vitl14/lvd142m"]
    assert main(["weights", "list", "--config", "tiny"]) == 0  # random weights need no file
    assert json.loads(capsys.readouterr().out) == []
    assert main(["weights", "list", "--config", "nope"]) == 2
    assert "nor an existing JSON file" in capsys.readouterr().err


def test_weights_fetch_checks_sha256(tmp_path, monkeypatch):
    from zsad.flows import weights_cmd
    from zsad import weights
    src = tmp_path / "src.pth"
    src.write_bytes(b"not the published bytes")
    wf = weights.WeightsFile("sam/test/x", "sam_test_ffffff.pth", None, "ffffff", src.as_uri())
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, wf.key, wf)
    with pytest.raises(weights.WeightsError, match="does not start with ffffff"):
        weights_cmd.fetch(wf.key, str(tmp_path / "dest"))
    assert not list((tmp_path / "dest").iterdir())  # nothing half-written is left


@pytest.mark.slow
def test_corrupt_image_is_named_and_store_keeps_finished_units(prefect_harness, synthetic_root, tmp_path, capsys):
    import shutil as sh
    from zsad.stores import StageStore
    root = tmp_path / "data"
    sh.copytree(synthetic_root, root)
    (root / "washer" / "test" / "good" / "001.png").write_bytes(b"\x89PNG broken")
    store = str(tmp_path / "s.zarr")
    worker.forget_stores()
    code = main(["precompute", "--dataset", "synthetic", "--root", str(root), "--store", store, "--config", "tiny"])
    assert code == 1  # done, one image failed
    err = capsys.readouterr().err
    assert "washer/test/good/001.png: not a readable image" in err and "7 images done, 1 failed" in err
    assert err.count("001.png: ") == 1  # the path is said once
    st = StageStore(store)
    from zsad.tasks.plan import plan_stages
    from zsad.config import PipelineConfig
    hashes = plan_stages(PipelineConfig.tiny()).hashes
    assert len(st.list_units("clipseg", hashes["clipseg"], "synthetic")) == 7  # every good image, both classes
    from zsad.tasks.failures import list_failures
    [record] = list_failures(st, hashes["image"], "synthetic")
    assert record["stage"] == "image" and record["path"].endswith("washer/test/good/001.png")
    sh.copy(synthetic_root / "washer" / "test" / "good" / "001.png", root / "washer" / "test" / "good" / "001.png")
    worker.forget_stores()
    assert main(["precompute", "--dataset", "synthetic", "--root", str(root), "--store", store]) == 0
    assert len(StageStore(store).list_units("clipseg", hashes["clipseg"], "synthetic")) == 8  # the fixed file
    assert list_failures(StageStore(store), hashes["image"], "synthetic") == []  # and its record is gone


def test_prune_keep_paper_works_without_the_paper_weights(cached_run, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ZSAD_WEIGHTS_DIR", str(tmp_path))  # no weights anywhere here
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert main(["cache", "prune", "--store", cached_run, "--keep", "paper", "--dry-run"]) == 0
    doomed = {p.split("/")[0] for p in json.loads(capsys.readouterr().out)["would_delete"]}
    # the tiny models' stages go; the image records and the foreground (same config as the paper's) stay
    assert {"isnet", "sam", "tiles", "clip_image", "clip_text", "clipseg"} <= doomed
    assert "image" not in doomed and "foreground" not in doomed


def test_panel_shows_ground_truth_only_where_known():
    import io
    import numpy as np
    from PIL import Image
    from zsad.datasets import known_ground_truth
    from zsad.plots import prediction_panel
    img, m = np.full((96, 128, 3), 120, np.uint8), np.zeros((96, 128))
    m[20:40, 30:60] = 0.9
    widths = [Image.open(io.BytesIO(prediction_panel(img, m, "t", "anomalous", 0.5, gt))).size[0]
              for gt in (m > 0.5, np.zeros((96, 128), bool), None)]
    assert widths == [1600, 1600, 1200]  # image | ground truth | heatmap | mask, or no ground-truth panel
    assert known_ground_truth(-1, None, (4, 4)) is None and known_ground_truth(1, None, (4, 4)) is None
    assert not known_ground_truth(0, None, (4, 4)).any()
