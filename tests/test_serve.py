"""``zsad serve``: uploads scored as ``zsad predict`` scores the same files, thresholds from the
store, the audit log, the token, limits applied before decoding, concurrent clients."""

from __future__ import annotations

import base64
import csv
import io
import struct
import threading
import zlib
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFile

from serving import live_server
from zsad.flows.cli import main
from zsad.serve.inspector import Inspector
from zsad.serve.inline_requests import ServeRequest
from zsad.serve.app import create_app
from zsad.serve.sinks import read_audit


@pytest.fixture(scope="module")
def store(calibrated_copy):
    return calibrated_copy


def _client(store: str, out: Path, **kw) -> TestClient:
    r = ServeRequest(store=store, out=str(out), classes=("pill",), allowed_hosts=("testserver",), **kw)
    inspector = Inspector(r)
    inspector.models_ready = True
    return TestClient(create_app(r, inspector))


def _files(paths, extra=()):
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in paths] + list(extra)


def _predict_rows(paths, store, out) -> dict[str, dict]:
    assert main(["predict", *map(str, paths), "--class", "pill", "--store", store, "--out", str(out)]) == 0
    with open(out / "scores.csv", newline="") as f:
        return {Path(r["path"]).read_bytes(): r for r in csv.DictReader(f)}


def test_uploads_score_as_predict_does_and_a_bad_file_gets_422(store, pills, tmp_path):
    out = tmp_path / "serve"
    with _client(store, out) as c:
        resp = c.post("/v1/predict", data={"class": "pill"},
                      files=_files(pills, [("files", ("notes.png", b"a text file, not an image", "image/png"))]))
    assert resp.status_code == 200 and resp.headers["x-request-id"] == resp.json()["request_id"]
    results = resp.json()["results"]
    assert [r["file"] for r in results] == [p.name for p in pills] + ["notes.png"]
    bad = results[-1]
    assert bad["status"] == 422 and bad["score"] is None and "not an image" in bad["error"]
    expected = _predict_rows(pills, store, tmp_path / "predict")
    for p, r in zip(pills, results):
        row = expected[p.read_bytes()]
        # the same operations on the same pixels in two processes of this machine (BLAS threads may differ)
        assert r["score"] == pytest.approx(float(row["sample_score"]), rel=1e-6, abs=1e-9)
        assert (r["decision"], r["threshold"], r["threshold_source"]) == (  # no server path in an answer
            row["decision"], float(row["threshold"]), Inspector(ServeRequest(store=store)).public(row["threshold_source"]))
    audit = read_audit(out / "audit.jsonl")
    assert len(audit) == len(results)  # one line per file decided (or refused)
    assert [(a["file"], a["score"], a["decision"]) for a in audit[:-1]] == [
        (r["file"], r["score"], r["decision"]) for r in results[:-1]]
    assert audit[-1]["decision"] == "error" and audit[-1]["sha256"] == bad["sha256"]


def test_raw_body_with_heatmap_and_the_panels_of_the_review_list(store, pills, tmp_path):
    with _client(store, tmp_path / "serve") as c:
        resp = c.post("/v1/predict?class=pill&heatmap=png&file=cam1.png", content=pills[-1].read_bytes(),
                      headers={"Content-Type": "image/png"})
        r = resp.json()["results"][0]
        png = Image.open(io.BytesIO(base64.b64decode(r["heatmap_png"])))
        assert resp.status_code == 200 and r["file"] == "cam1.png" and png.size[0] > png.size[1]
        listed = c.get("/v1/decisions").json()["decisions"]
        assert listed[0]["file"] == "cam1.png" and listed[0]["score"] == r["score"]
        panel = c.get(listed[0]["panel"])
        assert panel.status_code == 200 and panel.content == base64.b64decode(r["heatmap_png"])
        page = c.get("/")
        assert page.status_code == 200 and 'id="upload"' in page.text and "zsad report --store" in page.text


def test_no_stored_threshold_is_409_naming_the_commands_and_none_scores_without_deciding(store, pills, tmp_path):
    with _client(store, tmp_path / "serve") as c:
        resp = c.post("/v1/predict", data={"class": "capsule"}, files=_files(pills[:1]))
        err = resp.json()["results"][0]["error"]
        assert resp.status_code == 409 and "zsad calibrate" in err and "zsad evaluate" in err
        resp = c.post("/v1/predict", data={"class": "capsule", "threshold": "none"}, files=_files(pills[:1]))
        r = resp.json()["results"][0]
        assert resp.status_code == 200 and r["decision"] == "unknown" and r["threshold"] is None
        resp = c.post("/v1/predict", data={"class": "pill", "threshold": "0.0"}, files=_files(pills[:1]))
        assert resp.json()["results"][0]["decision"] == "anomalous"
        ready = c.get("/v1/ready").json()
        assert ready["ready"] and ready["checks"]["threshold:pill"]["ok"]


def test_a_mutual_variant_refuses_one_image(store, pills, tmp_path):
    with _client(store, tmp_path / "serve") as c:
        resp = c.post("/v1/predict", data={"class": "pill", "variant": "mode=mutual", "threshold": "none"},
                      files=_files(pills[:1]))
    assert resp.status_code == 422 and "--against" in resp.json()["results"][0]["error"]


def _bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_oversized_body_and_bomb_header_are_refused_before_decoding(store, tmp_path, monkeypatch):
    loads = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self.size) or original(self))
    with _client(store, tmp_path / "serve", max_upload_mb=0.05) as c:
        big = c.post("/v1/predict?class=pill", content=b"\0" * 60_000, headers={"Content-Type": "image/png"})
        assert big.status_code == 413 and big.json()["error"]["kind"] == "too_large"
        bomb = c.post("/v1/predict", data={"class": "pill"}, files=[("files", ("x.png", _bomb_png(60000, 60000),
                                                                                  "image/png"))])
    r = bomb.json()["results"][0]
    assert bomb.status_code == 413 and "refused before decoding" in r["error"] and "megapixels" in r["error"]
    assert loads == [] and not (tmp_path / "serve" / "uploads").exists()  # nothing decoded, nothing spooled


def test_error_bodies_carry_a_request_id_and_no_traceback(store, tmp_path):
    with _client(store, tmp_path / "serve") as c:
        for resp in (c.post("/v1/predict", data={"class": "../etc"}, files=[("files", ("a.png", b"x", "image/png"))]),
                     c.post("/v1/predict", data={"class": "pill", "reference": "../../etc"},
                            files=[("files", ("a.png", b"x", "image/png"))])):
            body = resp.json()
            assert resp.status_code == 422 and body["error"]["request_id"] == resp.headers["x-request-id"]
            assert "Traceback" not in resp.text


def test_token_required_off_loopback_and_checked(store, tmp_path, capsys):
    with pytest.raises(ValueError, match="needs a bearer token"):
        ServeRequest(store=store, host="0.0.0.0")
    assert main(["serve", "--store", store, "--host", "0.0.0.0", "--no-warm"]) != 0
    assert "refusing to start" in capsys.readouterr().err
    with _client(store, tmp_path / "serve", token="s3cret") as c:
        assert c.get("/v1/health").status_code == 200  # the liveness probe is open
        denied = c.get("/v1/ready")
        assert denied.status_code == 401 and "s3cret" not in denied.text
        assert c.get("/v1/ready", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/v1/ready", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/?token=s3cret").status_code == 200 and c.get("/metrics").status_code == 200  # the cookie
    assert "s3cret" not in repr(ServeRequest(store=store, token="s3cret"))


def test_concurrent_clients_are_each_answered_once(store, pills, tmp_path):
    r = ServeRequest(store=store, out=str(tmp_path / "serve"), batch_wait_ms=50)
    answers, errors = [], []

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            for i in range(3):
                p = pills[(k + i) % len(pills)]
                resp = c.post("/v1/predict", data={"class": "pill"}, files=_files([p]),
                              headers={"X-Request-ID": f"c{k}-{i}"})
                (answers if resp.status_code == 200 else errors).append((resp.headers["x-request-id"],
                                                                         resp.json()))

    with live_server(r) as (url, _):
        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        metrics = httpx.get(f"{url}/metrics").text
    assert errors == [] and sorted(rid for rid, _ in answers) == sorted(f"c{k}-{i}" for k in range(4) for i in range(3))
    assert all(body["request_id"] == rid and len(body["results"]) == 1 for rid, body in answers)
    audit = read_audit(tmp_path / "serve" / "audit.jsonl")
    assert sorted(a["request_id"] for a in audit) == sorted(rid for rid, _ in answers)  # none lost, none twice
    assert 'zsad_requests_total{route="/v1/predict",status="200"} 12.0' in metrics
    assert "zsad_batch_images_count" in metrics and "zsad_queue_depth" in metrics
