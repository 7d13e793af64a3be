"""The stage store: key grammar, crash safety of unit writes, listing."""

import numpy as np
import pytest

from zsad.stores import StageStore, Unit, unit_key
from zsad.stores.keys import class_key


def test_key_grammar_and_validation():
    u = Unit("visa", "pcb1", "test", "0001")
    assert unit_key("tiles", "ab12", u) == "tiles/ab12/visa/pcb1/test/0001"
    assert class_key("clip_text", "cd34", "visa", "pcb1") == "clip_text/cd34/visa/pcb1"
    for bad in ("../x", "a/b", "", "..", ".", "pill\n", "pill\r", "a" * 256, "ü", "a\x00"):
        with pytest.raises(ValueError, match="not a valid name"):
            Unit("visa", bad, "test", "1")
    assert Unit("visa", "a" * 255, "test", "x.png").class_name == "a" * 255
    with pytest.raises(ValueError, match="unknown stage"):
        unit_key("nope", "ab", u)


@pytest.mark.parametrize("writer", ["zarr", "plain"])
def test_crash_mid_write_leaves_nothing_that_looks_finished(tmp_path, monkeypatch, writer):
    """Ctrl-C after the arrays, before the marker, in either local writer (zarr-python for
    large or text arrays, ``zsad.stores.fastio`` plain files for small numeric ones)."""
    from zsad.stores import backends, fastio
    st = StageStore(tmp_path / "s.zarr")
    key = unit_key("isnet", "h1", Unit("d", "c", "test", "img"))
    st.write_unit(key, {"prob_hw": (np.ones((4, 4), np.uint8), ("y", "x"))}, source="sha")

    def crash_zarr(group, arrays, meta):
        group.create_array("prob_hw", data=np.zeros((4, 4), np.uint8), dimension_names=("y", "x"))
        raise KeyboardInterrupt

    real_write = fastio.write_group

    def crash_plain(folder, arrays, attrs):
        real_write(folder, arrays, {})  # arrays written, group metadata without the marker
        raise KeyboardInterrupt

    def broken():
        if writer == "zarr":
            monkeypatch.setattr(fastio, "writable", lambda arrays: False)
            monkeypatch.setattr(backends, "fill_group", crash_zarr)
        else:
            monkeypatch.setattr(fastio, "write_group", crash_plain)

    broken()
    with pytest.raises(KeyboardInterrupt):
        st.write_unit(key, {"prob_hw": (np.zeros((4, 4), np.uint8), ("y", "x"))}, source="sha2")
    monkeypatch.undo()
    assert st.is_complete(key, "sha")  # the finished unit is still there and readable
    assert (st.read_array(key, "prob_hw") == 1).all()
    assert st.read_complete(key, ("prob_hw",), "sha")[0]["prob_hw"].sum() == 16
    assert not [p for p in (tmp_path / "s.zarr").rglob(".tmp-*")]  # no debris
    other = unit_key("isnet", "h1", Unit("d", "c", "test", "new"))
    broken()
    with pytest.raises(KeyboardInterrupt):
        st.write_unit(other, {"prob_hw": (np.zeros((4, 4), np.uint8), ("y", "x"))}, source="sha")
    monkeypatch.undo()
    assert not st.is_complete(other) and st.read_complete(other, ("prob_hw",)) is None
    assert st.list_units("isnet", "h1", "d") == [Unit("d", "c", "test", "img")]


def test_plain_units_read_by_zarr_and_xarray(tmp_path):
    """Units written as plain files are ordinary Zarr v3: zarr-python and xarray read them, with
    compression above ``COMPRESS_ABOVE`` bytes; the plain reader gives the same arrays."""
    import xarray as xr
    import zarr

    from zsad.stores import fastio
    st = StageStore(tmp_path / "s.zarr")
    key = unit_key("fused", "h", Unit("d", "c", "test", "img"))
    rng = np.random.default_rng(0)
    arrays = {"fused_thw": (rng.random((2, 40, 30)).astype(np.float16), ("tile", "y", "x")),
              "component_t": (np.array([1, 2], np.int32), ("tile",)), "ok_t": (np.array([True, False]), ("tile",))}
    st.write_unit(key, arrays, {"label": 1, "nan": float("nan")}, source="sha")
    meta = (tmp_path / "s.zarr" / key / "fused_thw" / "zarr.json").read_text()
    assert '"zstd"' in meta and '"zstd"' not in (tmp_path / "s.zarr" / key / "component_t" / "zarr.json").read_text()
    group = zarr.open_group(str(tmp_path / "s.zarr" / key), mode="r")
    plain, attrs = st.read_complete(key, tuple(arrays), "sha")
    for name, (data, _) in arrays.items():
        np.testing.assert_array_equal(group[name][...], data)
        np.testing.assert_array_equal(plain[name], data)
        assert plain[name].dtype == data.dtype and plain[name].flags.writeable
    assert attrs["label"] == 1 and np.isnan(attrs["nan"]) and attrs["complete"] is True
    ds = xr.open_zarr(str(tmp_path / "s.zarr" / key), consolidated=False)
    assert ds["fused_thw"].dims == ("tile", "y", "x")
    assert st.read_complete(key, ("fused_thw",), "other-sha") is None
    assert fastio.read_array(tmp_path / "s.zarr" / key / "nope") is None


def test_read_of_missing_unit_is_a_clear_error(tmp_path):
    st = StageStore(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="missing or incomplete; run `zsad precompute` first"):
        st.read_unit("tiles/h/d/c/test/x")


def test_temp_folders_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    import os

    from procs import dead_pid
    from zsad.stores.temps import _HOST
    st = StageStore(tmp_path / "s.zarr")
    st.write_unit("tiles/abc/ds/cls/test/img", {"x": (np.zeros(3), ("t",))})
    split = tmp_path / "s.zarr" / "tiles" / "abc" / "ds" / "cls" / "test"
    (split / f".tmp-img2-{_HOST}-{dead_pid()}-deadbeef").mkdir()           # its writer was killed
    (split / f".tmp-img3-{_HOST}-{os.getpid()}-cafecafe").mkdir()        # a writer still running
    (split / ".tmp-img4-abcd1234").mkdir()                               # old format, recent: kept
    assert st.sweep_temps() == 1
    left = sorted(p.name for p in split.iterdir())
    assert left == [f".tmp-img3-{_HOST}-{os.getpid()}-cafecafe", ".tmp-img4-abcd1234", "img", "zarr.json"]
    assert st.read_array("tiles/abc/ds/cls/test/img", "x").shape == (3,)


def test_a_folder_left_without_group_metadata_is_still_listed_and_repaired(tmp_path):
    """What a kill between mkdir and zarr.json leaves: listing reads no metadata, so the class
    stays visible (zarr's own group listing would hide it), and the next write repairs it."""
    st = StageStore(tmp_path / "s.zarr")
    st.write_unit("tiles/abc/ds/pill/test/a", {"x": (np.zeros(2), ("t",))})
    st.write_unit("tiles/abc/ds/washer/test/b", {"x": (np.zeros(2), ("t",))})
    (tmp_path / "s.zarr" / "tiles" / "abc" / "ds" / "washer" / "zarr.json").unlink()
    assert StageStore(tmp_path / "s.zarr").children("tiles/abc/ds") == ["pill", "washer"]
    assert [u.image_id for u in StageStore(tmp_path / "s.zarr").list_units("tiles", "abc", "ds")] == ["a", "b"]
    StageStore(tmp_path / "s.zarr").write_unit("tiles/abc/ds/washer/test/c", {"x": (np.zeros(2), ("t",))})
    assert (tmp_path / "s.zarr" / "tiles" / "abc" / "ds" / "washer" / "zarr.json").is_file()
    assert [u.image_id for u in StageStore(tmp_path / "s.zarr").list_units("tiles", "abc", "ds")] == ["a", "b", "c"]

def test_read_only_view_refuses_every_write_and_the_store_is_unchanged(tmp_path):
    from zsad.stores import StoreError
    st = StageStore(tmp_path / "s.zarr")
    key = unit_key("isnet", "h1", Unit("d", "c", "test", "img"))
    st.write_unit(key, {"prob_hw": np.ones((2, 2), np.uint8)}, source="sha")
    ro = st.read_only_view()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for write in (lambda: ro.write_unit(key, {"prob_hw": np.zeros((2, 2), np.uint8)}, source="sha2"),
                  lambda: ro.ensure_stage("isnet", "h1", {}), lambda: ro.delete(key),
                  lambda: ro.write_record("_index/isnet/h1/d/r", {"a": 1})):
        with pytest.raises(StoreError, match="read-only"):
            write()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (ro.read_array(key, "prob_hw") == 1).all() and not st.read_only  # reads work; the store itself writes


def test_schema_gives_dimensions_and_names_a_wrong_array(tmp_path):
    st = StageStore(tmp_path / "s.zarr")
    key = unit_key("tiles", "h1", Unit("d", "c", "test", "img"))
    st.write_unit(key, {"boxes_xyxy": np.zeros((1, 4), np.int64), "component_t": np.zeros(1, np.int64)})
    import zarr
    assert zarr.open_group(str(tmp_path / "s.zarr" / key), mode="r")["boxes_xyxy"].metadata.dimension_names == \
        ("tile", "corner")
    with pytest.raises(ValueError, match="its arrays: boxes_xyxy, component_t, kind_t"):
        st.write_unit(key, {"boxes": np.zeros((1, 4))})
    with pytest.raises(ValueError, match="has dimensions"):
        st.write_unit(key, {"boxes_xyxy": (np.zeros((1, 4)), ("box", "corner"))})
    with pytest.raises(ValueError, match="dataset/class/split/image_id"):
        Unit.parse("d/c/test")


def test_a_pickled_store_reopens_as_this_process_store_and_stays_read_only(tmp_path):
    """What a Dask worker or a Prefect task receives: the URL and the flag, reopened there."""
    import pickle

    from zsad.stores import StoreError, open_store
    url = str(tmp_path / "s.zarr")
    ro = open_store(url, read_only=True)
    again = pickle.loads(pickle.dumps(ro))
    assert again is ro and again.read_only and again.index is open_store(url).index
    with pytest.raises(StoreError, match="read-only"):
        again.write_unit("tiles/ab12/visa/pcb1/test/000", {})
    assert pickle.loads(pickle.dumps(open_store(url))).read_only is False
    fresh = pickle.loads(pickle.dumps(StageStore(url, read_only=True)))  # not this process's: reopened
    assert fresh is ro
