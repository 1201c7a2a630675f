"""The manifest: columns, scan results, bad files counted and listed (never dropped), CSV/Parquet round trip."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_helpers import save_image

from pneumoscope.data.manifest import (
    MANIFEST_COLUMNS,
    build_manifest,
    read_manifest,
    save_manifest,
    write_manifest,
)
from pneumoscope.data.parallel import MIN_ITEMS_FOR_POOL
from pneumoscope.data.summary import problem_table
from pneumoscope.errors import DataError, LeakageError


@pytest.fixture(scope="module")
def tiny_manifest(tiny_kermany):
    return build_manifest([tiny_kermany], progress=False)


def test_columns_and_scan(tiny_manifest, tiny_kermany):
    m = tiny_manifest
    assert list(m.columns) == list(MANIFEST_COLUMNS)
    assert (m["status"] == "ok").all() and (m["error"] == "").all()
    assert (m["width"] == 64).all() and (m["height"] == 64).all() and (m["format"] == "jpeg").all()
    first = m.iloc[0]
    assert first["sha256"] == hashlib.sha256(Path(first["path"]).read_bytes()).hexdigest()
    assert (m["split"] == "").all() and (m["fold"] == -1).all()


def test_task_labels(tiny_manifest):
    m = tiny_manifest
    virus = m[m["fine_label"] == "virus"].iloc[0]
    assert (virus["label_binary"], virus["label_3class"], virus["label_4class"]) == ("pneumonia", "virus", "virus")
    normal = m[m["fine_label"] == "normal"].iloc[0]
    assert (normal["label_binary"], normal["label_3class"]) == ("normal", "normal")


@pytest.fixture
def messy_tree(tiny_kermany, tmp_path, make_xray):
    """A copy of the tiny Kermany tree with one file of every bad kind in train/NORMAL."""
    root = tmp_path / "chest_xray"
    shutil.copytree(tiny_kermany, root)
    normal = root / "train" / "NORMAL"
    whole = (normal / "IM-0000-0001.jpeg").read_bytes()
    (normal / "IM-0900-0001.jpeg").write_bytes(whole[: len(whole) // 3])  # truncated
    (normal / "IM-0901-0001.jpeg").write_bytes(b"")  # zero bytes
    (normal / "IM-0902-0001.jpeg").write_text("<html>403 Forbidden</html>")  # a failed download, not an image
    (normal / "readme.txt").write_text("labels by Dr. X")  # wrong extension, not an image
    save_image(normal / "IM-0903-0001.jpeg", make_xray(64, seed=77), format="PNG")  # PNG named .jpeg: usable
    return root


def test_bad_files_are_kept_counted_and_listed(messy_tree):
    m = build_manifest([messy_tree], progress=False)
    by_name = m.set_index(m["path"].str.rsplit("/", n=1).str[-1])
    assert by_name.loc["IM-0900-0001.jpeg", "status"] == "error"
    assert "truncated" in by_name.loc["IM-0900-0001.jpeg", "error"]
    assert "empty" in by_name.loc["IM-0901-0001.jpeg", "error"]
    assert "not an image" in by_name.loc["IM-0902-0001.jpeg", "error"]
    assert "not an image" in by_name.loc["readme.txt", "error"]
    assert by_name.loc["IM-0903-0001.jpeg", "status"] == "ok" and by_name.loc["IM-0903-0001.jpeg", "format"] == "png"
    assert (m["status"] == "error").sum() == 4
    problems = problem_table(m)
    assert (problems["level"] == "error").sum() == 4
    warning = problems[problems["level"] == "warning"]
    assert warning["path"].str.endswith("IM-0903-0001.jpeg").tolist() == [True]
    assert "content is png" in warning["problem"].iat[0]


def test_unscanned_manifest(tiny_kermany):
    m = build_manifest(tiny_kermany, scan=False)
    assert (m["status"] == "unscanned").all() and m["width"].isna().all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip(tiny_manifest, tmp_path, suffix):
    path = write_manifest(tiny_manifest, tmp_path / f"manifest{suffix}")
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back, tiny_manifest, check_dtype=False)
    assert back["fold"].dtype.kind == "i" and back["patient_id_known"].dtype == bool
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_save_manifest_writes_both(tiny_manifest, tmp_path):
    paths = save_manifest(tiny_manifest, tmp_path / "out")
    assert [p.name for p in paths] == ["manifest.csv", "manifest.parquet"] and all(p.is_file() for p in paths)


def test_read_manifest_runs_the_leakage_check(tiny_manifest, tmp_path):
    leaky = tiny_manifest.copy()
    leaky["split"] = "train"
    patient = leaky["patient_id"][leaky["patient_id"].duplicated()].iat[0]
    leaky.loc[leaky.index[leaky["patient_id"] == patient][0], "split"] = "val"
    path = write_manifest(leaky, tmp_path / "leaky.csv")
    with pytest.raises(LeakageError, match="patient"):
        read_manifest(path)
    assert len(read_manifest(path, check=False)) == len(leaky)


def test_read_manifest_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_manifest(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\na.png,normal\n")
    with pytest.raises(DataError, match="not a Pneumoscope manifest.*fine_label"):
        read_manifest(bad)


def test_parallel_scan_equals_serial_scan(tmp_path, make_xray):
    count = MIN_ITEMS_FOR_POOL + 8
    image = make_xray(16)
    for i in range(count):
        folder = "NORMAL" if i % 2 else "PNEUMONIA"
        name = f"IM-{i:04d}-0001.jpeg" if i % 2 else f"person{i}_bacteria_{i}.jpeg"
        save_image(tmp_path / "chest_xray" / "train" / folder / name, np.roll(image, i, axis=1))
    (tmp_path / "chest_xray" / "train" / "NORMAL" / "IM-9999-0001.jpeg").write_bytes(b"")
    serial = build_manifest([tmp_path / "chest_xray"], workers=1, progress=False)
    parallel = build_manifest([tmp_path / "chest_xray"], workers=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)
    assert (parallel["status"] == "error").sum() == 1
