"""``zsad serve`` against hostile clients (issue: the line service, safe to put on a line).
Each test is one probe that failed before: work bounded before anything heavy, server-made
identities, one name grammar, 4xx in the documented body for every client mistake, Host and
Origin checks, honest readiness, nothing written by refused requests. Concurrency, Host/Origin
and slow headers run against a real uvicorn (``serving.live_server``)."""

from __future__ import annotations

import csv
import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import copy_store
from serving import live_server
from zsad.serve.inspector import Inspector
from zsad.serve.inline_requests import ServeRequest
from zsad.serve.app import create_app
from zsad.serve.sinks import read_audit

GRID_VARIANT = ";".join(f"{k}={','.join(v)}" for k, v in {  # 24^4 = 331,776 variants in 409 characters
    "top_fraction": [f"0.{i:02d}" for i in range(1, 25)], "mutual_fraction": [f"0.{i:02d}" for i in range(1, 25)],
    "shots": [str(i) for i in range(1, 25)], "shot_seed": [str(i) for i in range(24)]}.items())
SHORT_GRID_VARIANT = ";".join(f"{k}={','.join(v)}" for k, v in {  # 13^4 = 28,561 variants in under 256
    "top_fraction": [f"0.{i}" for i in range(1, 10)] + ["0.15", "0.25", "0.35", "0.45"],
    "mutual_fraction": [f"0.{i}" for i in range(1, 10)] + ["0.15", "0.25", "0.35", "0.45"],
    "shots": [str(i) for i in range(1, 14)], "shot_seed": [str(i) for i in range(13)]}.items())


@pytest.fixture(scope="module")
def store(calibrated_copy):
    return calibrated_copy


def _request(store: str, out: Path, **kw) -> ServeRequest:
    return ServeRequest(store=store, out=str(out), classes=("pill",), **kw)


def _client(r: ServeRequest) -> TestClient:
    inspector = Inspector(r)
    inspector.models_ready = True
    return TestClient(create_app(r, inspector), base_url="http://127.0.0.1:8000")


def _new_png(seed: int) -> bytes:
    """A small image no other test uploads (new bytes: a new sha256)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _error(resp: httpx.Response) -> dict:
    """The documented error body (asserted to be exactly that shape)."""
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"kind", "message", "request_id"}, body
    assert body["error"]["request_id"] == resp.headers["x-request-id"]
    return body["error"]


def _store_names(store: str) -> set[str]:
    return {p.name for p in Path(store).rglob("*")}


@pytest.mark.parametrize("name", ["pill\n", "..", ".", "", "a" * 65, "pi ll", "pill\r", "p\x00ill", "ü"])
def test_the_name_grammar_refuses_with_422_and_creates_nothing(store, pills, tmp_path, name):
    before = _store_names(store)
    with _client(_request(store, tmp_path / "serve")) as c:
        resp = c.post("/v1/predict", data={"class": name}, files=[("files", ("a.png", pills[0].read_bytes(),
                                                                                 "image/png"))])
    assert resp.status_code == 422, resp.text
    assert "not a valid name" in _error(resp)["message"] or "over its limit" in _error(resp)["message"]
    assert _store_names(store) == before and not (tmp_path / "serve" / "uploads").exists()


def test_a_grid_of_variants_is_refused_before_it_is_built_and_health_stays_fast(store, pills, tmp_path):
    r = _request(store, tmp_path / "serve")
    with live_server(r) as (url, _):
        refused, health = [], []

        def attack() -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                for k in range(6):
                    t0 = time.perf_counter()
                    resp = c.post("/v1/predict", data={"class": "pill", "variant": (GRID_VARIANT, SHORT_GRID_VARIANT)[k % 2]},
                                  files=[("files", ("a.png", pills[0].read_bytes(), "image/png"))])
                    refused.append((resp.status_code, time.perf_counter() - t0, resp.json()["error"]["message"]))

        attacker = threading.Thread(target=attack)
        attacker.start()
        with httpx.Client(base_url=url, timeout=10) as c:
            while attacker.is_alive() or len(health) < 20:
                t0 = time.perf_counter()
                assert c.get("/v1/health").status_code == 200
                health.append(time.perf_counter() - t0)
        attacker.join()
    assert len(SHORT_GRID_VARIANT) <= 256 < len(GRID_VARIANT)
    assert all(s == 422 for s, _, _ in refused)
    assert all(("give one value per field" if k % 2 else "over its limit") in m for k, (_, _, m) in enumerate(refused))
    assert max(t for _, t, _ in refused) < 2.0
    assert sorted(health)[int(0.99 * (len(health) - 1))] < 0.1  # p99 of the liveness probe


def test_mutual_jobs_are_kept_apart_by_the_server_not_by_the_clients_request_id(store, pills, tmp_path):
    r = _request(store, tmp_path / "serve", batch_wait_ms=800)  # both requests arrive within one batch window
    with live_server(r) as (url, _):
        def one(k: int) -> httpx.Response:
            return httpx.post(f"{url}/v1/predict", data={"class": "pill", "variant": "mode=mutual", "threshold": "none"},
                              files=[("files", (f"{k}.png", pills[k].read_bytes(), "image/png"))],
                              headers={"X-Request-ID": "same-id"}, timeout=120)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(one, range(2)))
    for resp in answers:  # each is one image: refused, never scored against the other client's image
        assert resp.status_code == 422 and resp.headers["x-request-id"] == "same-id"
        assert "compares the images of one request" in resp.json()["results"][0]["error"]


def test_a_malformed_request_id_is_refused_and_never_echoed(store, tmp_path):
    with _client(_request(store, tmp_path / "serve")) as c:
        resp = c.get("/v1/health", headers={"X-Request-ID": "a\tb" + "x" * 100})
    assert resp.status_code == 422 and "X-Request-ID" in _error(resp)["message"]
    assert "xxxx" not in resp.headers["x-request-id"]


def test_identical_concurrent_uploads_all_succeed_and_are_stored_once(store, tmp_path):
    data = _new_png(1)
    r = _request(store, tmp_path / "serve", threshold="none", queue_size=32, max_reading=16)
    with live_server(r) as (url, _):
        def one(_: int) -> int:
            return httpx.post(f"{url}/v1/predict?class=pill", content=data, headers={"Content-Type": "image/png"},
                              timeout=120).status_code
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(one, range(16)))
    assert statuses == [200] * 16
    assert len([p for p in (tmp_path / "serve" / "uploads").iterdir()]) == 1  # one file, no temp left


def test_host_and_origin_guard_a_tokenless_server(store, pills, tmp_path):
    r = _request(store, tmp_path / "serve", threshold="none")
    with live_server(r) as (url, _):
        port = url.rsplit(":", 1)[1]
        with httpx.Client(base_url=url, timeout=60) as c:
            for path in ("/v1/decisions", "/metrics", "/"):
                resp = c.get(path, headers={"Host": f"evil.example:{port}"})  # DNS rebinding
                assert resp.status_code == 400 and _error(resp)["kind"] == "bad_host"
            files = [("files", ("a.png", pills[0].read_bytes(), "image/png"))]
            for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
                resp = c.post("/v1/predict", data={"class": "pill"}, files=files, headers=headers)
                assert resp.status_code == 403 and _error(resp)["kind"] == "cross_site"
            assert not (tmp_path / "serve" / "audit.jsonl").exists()  # nothing scored, nothing written
            page = c.post("/v1/predict", data={"class": "pill"}, files=files,  # the review page's own post
                          headers={"Origin": url, "Sec-Fetch-Site": "same-origin"})
            assert page.status_code == 200
            assert c.get("/v1/health", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_allowed_host_and_a_wildcard_bind_with_a_token(store, tmp_path):
    with _client(_request(store, tmp_path / "a", allowed_hosts=("line-3.local",))) as c:
        assert c.get("/v1/health", headers={"Host": "line-3.local:8000"}).status_code == 200
        assert c.get("/v1/health", headers={"Host": "line-4.local:8000"}).status_code == 400
    with _client(_request(store, tmp_path / "b", host="0.0.0.0", token="t0k")) as c:  # the token guards it
        assert c.get("/v1/ready", headers={"Host": "10.1.2.3:8000", "Authorization": "Bearer t0k"}).status_code == 200


def test_the_page_carries_a_csp_with_a_nonce_and_every_answer_the_security_headers(store, tmp_path):
    with _client(_request(store, tmp_path / "serve")) as c:
        page, api = c.get("/"), c.get("/v1/health")
    csp = page.headers["content-security-policy"]
    nonce = csp.split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'<script nonce="{nonce}">' in page.text and f'<style nonce="{nonce}">' in page.text
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    for resp in (page, api):
        assert resp.headers["x-frame-options"] == "DENY" and resp.headers["x-content-type-options"] == "nosniff"


def test_ready_checks_the_servers_own_variant_and_reference(store, synthetic_root, tmp_path):
    with _client(_request(store, tmp_path / "a")) as c:
        assert c.get("/v1/ready").status_code == 200
    with _client(_request(store, tmp_path / "b", variant="fusion=geometric")) as c:  # no threshold under it
        resp = c.get("/v1/ready")
        assert resp.status_code == 503 and not resp.json()["checks"]["threshold:pill"]["ok"]
        assert store not in resp.text and str(Path(store).resolve()) not in resp.text
    good = str(Path(synthetic_root) / "pill" / "test" / "good")
    with _client(_request(store, tmp_path / "c", reference=good)) as c:  # few-shot against good: no threshold
        resp = c.get("/v1/ready")
        assert resp.status_code == 503 and resp.json()["checks"]["variant"]["ok"]


def test_an_overload_writes_nothing_for_the_refused(store, tmp_path):
    r = _request(store, tmp_path / "serve", threshold="none", queue_size=2, max_reading=2, max_batch=1)
    with live_server(r) as (url, _):
        def one(k: int) -> int:
            return httpx.post(f"{url}/v1/predict?class=pill", content=_new_png(100 + k),
                              headers={"Content-Type": "image/png"}, timeout=120).status_code
        with ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(one, range(24)))
    accepted = statuses.count(200)
    assert set(statuses) <= {200, 503} and statuses.count(503) > 0 and accepted > 0
    assert len(list((tmp_path / "serve" / "uploads").iterdir())) == accepted


def test_raw_bodies_by_content_type(store, pills, tmp_path):
    data = pills[0].read_bytes()
    with _client(_request(store, tmp_path / "serve", threshold="none")) as c:
        form = c.post("/v1/predict?class=pill", content=data,  # what `curl --data-binary` sends by default
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415 and "Content-Type: image/png" in _error(form)["message"]
        bare = c.post("/v1/predict?class=pill", content=data, headers={"Content-Type": ""})
        assert bare.status_code == 415
        for kind in ("image/png", "application/octet-stream"):
            assert c.post("/v1/predict?class=pill", content=data, headers={"Content-Type": kind}).status_code == 200
    assert not (tmp_path / "serve" / "uploads" / "x").exists()


@pytest.mark.parametrize("fields,expect", [
    ({"class": "pill", "threshold": "inf"}, "finite"),
    ({"class": "pill", "threshold": "nan"}, "finite"),
    ({"class": "pill", "threshold": "1e999"}, "finite"),
    ({"class": "pill", "heatmap": "svg"}, "heatmap"),
    ({"class": "pill", "colour": "red"}, "unknown field"),
    ({"class": "pill", "variant": "x" * 300}, "over its limit"),
    ({"class": "pill", "variant": "mode=psychic"}, "variant"),
    ({"class": "pill", "reference": "good"}, "no --reference"),
    ({"threshold": "auto"}, "'class' is required"),
])
def test_bad_fields_are_422_in_the_documented_body(store, pills, tmp_path, fields, expect):
    with _client(_request(store, tmp_path / "serve")) as c:
        resp = c.post("/v1/predict", data=fields, files=[("files", ("a.png", pills[0].read_bytes(), "image/png"))])
    assert resp.status_code == 422 and expect in _error(resp)["message"], resp.text
    assert not (tmp_path / "serve" / "uploads").exists()


def test_parser_errors_are_4xx_in_the_documented_body(store, pills, tmp_path):
    png = pills[0].read_bytes()
    with _client(_request(store, tmp_path / "serve", max_batch=2)) as c:
        many = c.post("/v1/predict", data={f"f{i}": "x" for i in range(30)}, files=[("files", ("a.png", png, "image/png"))])
        files = c.post("/v1/predict", data={"class": "pill"}, files=[("files", (f"{i}.png", png, "image/png"))
                                                                     for i in range(3)])
        long = c.post("/v1/predict", data={"class": "pill"}, files=[("files", ("a" * 10_000 + ".png", png, "image/png"))])
        ctrl = c.post("/v1/predict?class=pill&file=a%0Aforged.png", content=png, headers={"Content-Type": "image/png"})
        missing, method = c.get("/v1/nothing"), c.delete("/v1/predict")
        bad_int = c.get("/v1/decisions?limit=lots")
    for resp, status in ((many, 422), (files, 422), (long, 422), (ctrl, 422), (missing, 404), (method, 405),
                         (bad_int, 422)):
        assert resp.status_code == status, (resp.status_code, resp.text)
        assert "detail" not in resp.json()
        _error(resp)


def test_few_shot_mistakes_are_422_without_server_paths(store, synthetic_root, pills, tmp_path):
    ref_root = tmp_path / "refs"
    (ref_root / "pill").mkdir(parents=True)
    goods = sorted((Path(synthetic_root) / "pill" / "test" / "good").glob("*.png"))
    for p in goods:
        (ref_root / "pill" / p.name).write_bytes(p.read_bytes())
    r = _request(store, tmp_path / "serve", threshold="none", reference=str(ref_root / "pill"))
    with _client(r) as c:
        leak = c.post("/v1/predict", data={"class": "pill", "variant": "mode=few-shot"},
                      files=[("files", ("g.png", goods[0].read_bytes(), "image/png"))])
        missing = c.post("/v1/predict", data={"class": "pill", "reference": "nope"},
                         files=[("files", ("d.png", pills[-1].read_bytes(), "image/png"))])
        threshold = c.post("/v1/predict", data={"class": "capsule", "threshold": "auto"},
                           files=[("files", ("d.png", pills[-1].read_bytes(), "image/png"))])
    with _client(_request(store, tmp_path / "plain", threshold="none")) as c:  # references from the data set
        shots = c.post("/v1/predict", data={"class": "pill", "variant": "mode=few-shot;shots=1000000"},
                       files=[("files", ("d.png", pills[-1].read_bytes(), "image/png"))])
    assert leak.status_code == 422 and "also reference" in leak.json()["results"][0]["error"], leak.text
    assert shots.status_code == 422 and "few-shot" in shots.json()["results"][0]["error"]
    assert missing.status_code == 422 and "no sub-folder 'nope'" in _error(missing)["message"]
    assert threshold.status_code == 409
    for resp in (leak, shots, missing, threshold):
        assert str(tmp_path) not in resp.text and store not in resp.text, resp.text


def test_scores_csv_escapes_formula_cells_and_has_the_predict_schema(store, pills, tmp_path):
    from zsad.flows.scores_csv import SCORES_FIELDS
    with _client(_request(store, tmp_path / "serve", threshold="none")) as c:
        c.post("/v1/predict", data={"class": "pill"},
               files=[("files", ('=HYPERLINK("http://x").png', pills[0].read_bytes(), "image/png")),
                      ("files", ("@SUM(1).png", b"not an image", "image/png"))])
    with open(tmp_path / "serve" / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == SCORES_FIELDS
    assert rows[1]["path"] == "'@SUM(1).png" and all(not v.startswith(("=", "+", "@")) for r in rows for v in r.values())


def test_report_index_is_served(store, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.html").write_text("<html><body>the report</body></html>")
    with _client(_request(store, tmp_path / "serve", report_dir=str(report))) as c:
        resp = c.get("/report/")
    assert resp.status_code == 200 and "the report" in resp.text


def test_half_open_connections_are_closed_after_the_header_timeout(store, tmp_path):
    r = _request(store, tmp_path / "serve", header_timeout_s=1.0, max_connections=64)
    with live_server(r) as (url, _):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        socks = []
        for _ in range(40):
            s = socket.create_connection((host, int(port)))
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # headers never finished
            socks.append(s)
        time.sleep(2.5)
        closed = 0
        for s in socks:
            s.settimeout(2)
            try:
                closed += s.recv(1) == b""
            except OSError:
                closed += 1
            s.close()
        assert closed == 40
        t0 = time.perf_counter()
        assert httpx.get(f"{url}/v1/health", timeout=5).status_code == 200 and time.perf_counter() - t0 < 1


def test_audit_log_and_answers_echo_the_clients_id_for_each_request(store, pills, tmp_path):
    with _client(_request(store, tmp_path / "serve", threshold="none")) as c:
        resp = c.post("/v1/predict", data={"class": "pill"}, headers={"X-Request-ID": "cam-7.0001"},
                      files=[("files", ("a.png", pills[0].read_bytes(), "image/png"))])
    assert resp.status_code == 200 and resp.json()["request_id"] == "cam-7.0001"
    assert [a["request_id"] for a in read_audit(tmp_path / "serve" / "audit.jsonl")] == ["cam-7.0001"]


def test_watch_refuses_links_out_of_its_folder_and_names_cannot_forge_log_lines(store, pills, tmp_path, capsys):
    from zsad.serve.inline_requests import WatchRequest
    from zsad.serve.watch import run_watch
    folder, outside = tmp_path / "line", tmp_path / "secret"
    folder.mkdir()
    outside.mkdir()
    (outside / "private.png").write_bytes(pills[1].read_bytes())
    (folder / "link.png").symlink_to(outside / "private.png")
    (folder / "cam\nzsad watch: forged.png: score 0.0000 normal.png").write_bytes(pills[0].read_bytes())
    result = run_watch(WatchRequest(folder=str(folder), class_name="pill", store=store, out=str(tmp_path / "w"),
                                    once=True, threshold="none"))
    printed = capsys.readouterr().out.splitlines()
    audit = read_audit(tmp_path / "w" / "audit.jsonl")
    refused = [a for a in audit if a["file"].endswith("link.png")]
    assert len(refused) == 1 and refused[0]["status"] == 403 and "outside the watched folder" in refused[0]["error"]
    assert not any("private.png" in a["file"] or a.get("sha256") for a in refused)  # never opened
    assert result["n_scored"] == 1 and result["n_failed"] == 1
    assert not any(line.startswith("zsad watch: forged.png") for line in printed)
    assert any("cam\\nzsad watch: forged.png" in line for line in printed)


FIELD_NAMES = ("class", "threshold", "variant", "reference", "heatmap", "file", "files", "x", "class\n")


@pytest.mark.slow
def test_fuzzed_fields_and_file_names_never_5xx_never_write_outside_and_keep_keys_parseable(
        precomputed_store, pills, tmp_path_factory):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from zsad.stores import Unit
    root = tmp_path_factory.mktemp("fuzz")
    store = copy_store(precomputed_store, root / "s.zarr")
    png = pills[0].read_bytes()
    names = st.one_of(st.sampled_from(["pill", "..", ".", "pill\n", "", "a" * 70, "capsule", "pi/ll"]), st.text(max_size=80))
    values = st.one_of(names, st.sampled_from(["inf", "nan", "-1", "0.5", "none", "mode=mutual", "mode=few-shot;shots=9",
                                               "grid", "png", "top_fraction=0.1,0.2"]))
    fields = st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=5)
    bodies = st.one_of(st.just(png), st.binary(max_size=64))
    outside_before = {p for p in root.rglob("*") if not p.is_relative_to(root / "s.zarr")}

    with _client(_request(store, root / "out", threshold="none", allowed_hosts=("testserver",))) as c:
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(fields=fields, file_name=st.text(max_size=300), body=bodies, raw=st.booleans())
        def probe(fields, file_name, body, raw):
            if raw:
                resp = c.post("/v1/predict", params=fields, content=body, headers={"Content-Type": "image/png"})
            else:
                resp = c.post("/v1/predict", data={k: v for k, v in fields.items() if k != "files"},
                              files=[("files", (file_name, body, "image/png"))])
            assert resp.status_code < 500, (fields, file_name, resp.text)
            if resp.status_code != 200:
                assert "error" in resp.json() or "results" in resp.json()
        probe()
    outside_after = {p for p in root.rglob("*") if not p.is_relative_to(root / "s.zarr")}
    assert {p for p in outside_after - outside_before if not p.is_relative_to(root / "out")} == set()
    for unit_dir in (root / "s.zarr").glob("image/*/*/*/*/*"):  # stage/hash/dataset/class/split/image id
        Unit.parse("/".join(unit_dir.relative_to(root / "s.zarr").parts[2:]))


def test_a_restarted_service_sweeps_what_a_writer_killed_mid_unit_left(store, tmp_path):
    """``kill -9`` mid-write leaves a temp folder named after its writer; the next ``serve`` or
    ``watch`` removes it before serving (a live writer's is kept)."""
    import os

    from procs import dead_pid
    from zsad.stores.temps import _HOST
    crashed = copy_store(store, tmp_path / "crashed.zarr")
    split = next(p for p in Path(crashed).glob("*/*/*/pill/test") if p.is_dir())
    (split / f".tmp-x-{_HOST}-{dead_pid()}-deadbeef").mkdir()
    (split / f".tmp-y-{_HOST}-{os.getpid()}-cafecafe").mkdir()
    inspector = Inspector(_request(crashed, tmp_path / "out"))
    assert inspector.swept == 1
    assert [p.name for p in split.glob(".tmp-*")] == [f".tmp-y-{_HOST}-{os.getpid()}-cafecafe"]
