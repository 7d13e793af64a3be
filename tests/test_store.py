"""The stage store: key grammar, crash safety of unit writes, listing."""

import numpy as np
import pytest

from stores import StageStore, Unit, unit_key
from stores.keys import class_key


def test_key_grammar_and_validation():
    u = Unit("visa", "pcb1", "test", "0001")
    assert unit_key("tiles", "ab12", u) == "tiles/ab12/visa/pcb1/test/0001"
    assert class_key("clip_text", "cd34", "visa", "pcb1") == "clip_text/cd34/visa/pcb1"
    for bad in ("../x", "a/b", "", ".."):
        with pytest.raises(ValueError, match="not a valid store key component"):
            Unit("visa", bad, "test", "1")
    with pytest.raises(ValueError, match="unknown stage"):
        unit_key("nope", "ab", u)


def test_crash_mid_write_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    st = StageStore(tmp_path / "s.zarr")
    key = unit_key("isnet", "h1", Unit("d", "c", "test", "img"))
    st.write_unit(key, {"prob_hw": (np.ones((4, 4), np.uint8), ("y", "x"))}, source="sha")
    original = StageStore._fill

    def crash(group, arrays, meta):
        group.create_array("prob_hw", data=np.zeros((4, 4), np.uint8), dimension_names=("y", "x"))
        raise KeyboardInterrupt  # Ctrl-C after the arrays, before the marker

    monkeypatch.setattr(StageStore, "_fill", staticmethod(crash))
    with pytest.raises(KeyboardInterrupt):
        st.write_unit(key, {"prob_hw": (np.zeros((4, 4), np.uint8), ("y", "x"))}, source="sha2")
    monkeypatch.setattr(StageStore, "_fill", staticmethod(original))
    assert st.is_complete(key, "sha")  # the finished unit is still there and readable
    assert (st.read_array(key, "prob_hw") == 1).all()
    assert not [p for p in (tmp_path / "s.zarr").rglob(".tmp-*")]  # no debris
    other = unit_key("isnet", "h1", Unit("d", "c", "test", "new"))
    monkeypatch.setattr(StageStore, "_fill", staticmethod(crash))
    with pytest.raises(KeyboardInterrupt):
        st.write_unit(other, {"prob_hw": (np.zeros((4, 4), np.uint8), ("y", "x"))}, source="sha")
    assert not st.is_complete(other)
    assert st.list_units("isnet", "h1", "d") == [Unit("d", "c", "test", "img")]


def test_read_of_missing_unit_is_a_clear_error(tmp_path):
    st = StageStore(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="missing or incomplete; run `zsad precompute` first"):
        st.read_unit("tiles/h/d/c/test/x")


def test_temp_folders_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys
    from stores.zarr_store import _HOST
    st = StageStore(tmp_path / "s.zarr")
    st.write_unit("tiles/abc/ds/cls/test/img", {"x": (np.zeros(3), ("t",))})
    split = tmp_path / "s.zarr" / "tiles" / "abc" / "ds" / "cls" / "test"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (split / f".tmp-img2-{_HOST}-{dead.pid}-deadbeef").mkdir()           # its writer was killed
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