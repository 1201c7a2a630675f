"""``pneumoscope data inspect`` and ``data split`` end to end, and bad input as one-line errors with exit status 2."""

from __future__ import annotations

import json
import shutil
import sys

import pandas as pd
import pytest

from pneumoscope.cli.main import main


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["pneumoscope", *args])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_inspect_prints_counts_and_writes_files(monkeypatch, capsys, tiny_kermany, tmp_path):
    code, out, _ = run_cli(monkeypatch, capsys, "data", "inspect", str(tiny_kermany), "--out", str(tmp_path / "o"))
    assert code == 0
    assert "kermany" in out and "problems: none" in out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    train = next(r for r in summary["counts"] if r["split"] == "train")
    manifest = pd.read_csv(tmp_path / "o" / "manifest.csv")
    assert train["normal"] == int(((manifest["official_split"] == "train") & (manifest["fine_label"] == "normal"))
                                  .sum())
    assert (tmp_path / "o" / "manifest.parquet").is_file() and (tmp_path / "o" / "problems.csv").is_file()


def test_inspect_lists_unreadable_files(monkeypatch, capsys, tiny_kermany, tmp_path):
    root = tmp_path / "chest_xray"
    shutil.copytree(tiny_kermany, root)
    (root / "train" / "NORMAL" / "IM-0999-0001.jpeg").write_bytes(b"")
    (root / "train" / "PNEUMONIA" / "person999_virus_1.jpeg").write_text("not an image")
    code, out, _ = run_cli(monkeypatch, capsys, "data", "inspect", str(root), "--out", str(tmp_path / "o"))
    assert code == 0
    assert "2 unreadable file(s) skipped" in out
    assert "IM-0999-0001.jpeg" in out and "person999_virus_1.jpeg" in out
    problems = pd.read_csv(tmp_path / "o" / "problems.csv")
    assert sorted(problems["problem"].str.split(r"[:(]").str[0].str.strip()) == ["empty file", "not an image"]


def test_inspect_lists_images_too_small_or_too_elongated_to_be_an_x_ray(monkeypatch, capsys, tiny_kermany,
                                                                         tmp_path):
    import numpy as np
    from data_helpers import save_image

    root = tmp_path / "chest_xray"
    shutil.copytree(tiny_kermany, root)
    save_image(root / "train" / "NORMAL" / "IM-0998-0001.png", np.full((1, 1), 128, np.uint8))
    save_image(root / "train" / "PNEUMONIA" / "person998_virus_1.png", np.full((40_000, 5), 128, np.uint8))
    save_image(root / "train" / "PNEUMONIA" / "person997_virus_1.png", np.full((4_000, 100), 128, np.uint8))
    code, out, _ = run_cli(monkeypatch, capsys, "data", "inspect", str(root), "--out", str(tmp_path / "o"))
    assert code == 0 and "problems: none" not in out and "3 unreadable file(s) skipped" in out
    problems = pd.read_csv(tmp_path / "o" / "problems.csv")
    by_name = {p.split("/")[-1]: (level, problem) for p, level, problem in problems.itertuples(index=False)}
    assert set(by_name) == {"IM-0998-0001.png", "person998_virus_1.png", "person997_virus_1.png"}
    assert {level for level, _ in by_name.values()} == {"error"}
    assert "too small" in by_name["IM-0998-0001.png"][1] and "1x1" in by_name["IM-0998-0001.png"][1]
    assert "too small" in by_name["person998_virus_1.png"][1] and "5x40000" in by_name["person998_virus_1.png"][1]
    assert "too elongated" in by_name["person997_virus_1.png"][1] and "100x4000" in by_name["person997_virus_1.png"][1]


def test_split_writes_manifest_and_prints_table(monkeypatch, capsys, tiny_kermany, tmp_path):
    out_dir = tmp_path / "split"
    args = ("data", "split", str(tiny_kermany), "--task", "3class", "--val-fraction", "0.3", "--folds", "2",
            "--seed", "5", "--out", str(out_dir))
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "leakage check passed" in err
    manifest = pd.read_csv(out_dir / "manifest.csv", keep_default_na=False)
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert set(manifest["fold"]) == {-1, 0, 1}
    for split in ("train", "val", "test"):
        assert f"{split} " in out or f"│ {split}" in out
    first = manifest[["path", "split", "fold"]]
    code, _, _ = run_cli(monkeypatch, capsys, *args)
    again = pd.read_csv(out_dir / "manifest.csv", keep_default_na=False)[["path", "split", "fold"]]
    pd.testing.assert_frame_equal(first, again)
    assert (out_dir / "manifest.parquet").is_file() and (out_dir / "folds.csv").is_file()


def test_split_max_images_keeps_whole_patients_and_the_official_test(monkeypatch, capsys, tiny_kermany, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "data", "split", str(tiny_kermany), "--max-images", "20",
                           "--out", str(tmp_path / "small"))
    assert code == 0, err
    full = pd.read_csv(tmp_path / "small" / "manifest.csv", keep_default_na=False)
    pool = full[full["official_split"] != "test"]
    assert 12 <= len(pool) <= 28 and set(pool["split"]) == {"train", "val"}
    assert (full["official_split"] == "test").sum() == len(list((tiny_kermany / "test").rglob("*.jpeg")))


@pytest.mark.parametrize(("args", "message"), [
    (["data", "inspect", "{tmp}/missing"], "data set not found"),
    (["data", "split", "{kermany}", "--task", "7class", "--out", "{tmp}/o"], "unknown task '7class'"),
    (["data", "split", "{kermany}", "--val-fraction", "1.5", "--out", "{tmp}/o"], "val_fraction"),
    (["data", "split", "{kermany}", "--folds", "500", "--out", "{tmp}/o"], "500 folds need"),
    (["data", "inspect", "{tmp}/bad.csv"], "lacks column(s) label"),
])
def test_bad_input_is_one_line_exit_2(monkeypatch, capsys, tiny_kermany, tmp_path, args, message):
    (tmp_path / "bad.csv").write_text("path\na.png\n")
    args = [a.format(tmp=tmp_path, kermany=tiny_kermany) for a in args]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in err


def _class_folders(root, make_xray, per_class: int):
    from data_helpers import save_image

    for label in ("NORMAL", "PNEUMONIA"):
        for i in range(per_class):
            save_image(root / label / f"{label.lower()}{i}.png", make_xray(48, seed=i, pneumonia=label == "PNEUMONIA"))
    return root


def test_split_of_a_small_data_set_works_and_a_too_small_one_says_what_it_needs(monkeypatch, capsys, tmp_path,
                                                                                  make_xray):
    small = _class_folders(tmp_path / "six", make_xray, 6)
    code, _, err = run_cli(monkeypatch, capsys, "data", "split", str(small), "--out", str(tmp_path / "o6"))
    assert code == 0, err
    manifest = pd.read_csv(tmp_path / "o6" / "manifest.csv", keep_default_na=False)
    assert set(manifest.loc[manifest["split"] == "val", "label_binary"]) == {"normal", "pneumonia"}

    tiny = _class_folders(tmp_path / "two", make_xray, 1)
    code, _, err = run_cli(monkeypatch, capsys, "data", "split", str(tiny), "--out", str(tmp_path / "o2"))
    assert code == 2 and "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert "at least 2 patients" in line and "normal: 1 patient (1 image)" in line and "Fix:" in line

