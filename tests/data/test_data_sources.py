"""Source readers and layout detection: Kermany, COVID-19 Radiography DB (with / without images/), class-per-folder
trees, CSV manifests, combining sources, and the bad layouts (missing folder, empty class folder, unknown layout)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from data_helpers import save_image

from pneumoscope.data.sources import (
    SOURCE_COLUMNS,
    SourceSpec,
    detect_layout,
    kermany_label_and_patient,
    parse_source,
    read_csv_manifest,
    read_source,
    read_sources,
)
from pneumoscope.errors import DataError


def write_covid_db(root: Path, make_xray, with_images_subfolder: bool, per_class: int = 3) -> Path:
    folders = {"COVID": "COVID", "Normal": "Normal", "Viral Pneumonia": "Viral Pneumonia",
               "Lung_Opacity": "Lung_Opacity"}
    for i, (folder, prefix) in enumerate(folders.items()):
        base = root / folder / "images" if with_images_subfolder else root / folder
        for k in range(per_class):
            save_image(base / f"{prefix}-{k + 1}.png", make_xray(32, seed=10 * i + k))
        if with_images_subfolder:  # the Kaggle archive also has lung masks: not chest X-rays, must be skipped
            save_image(root / folder / "masks" / f"{prefix}-1.png", make_xray(32, seed=99))
    (root / "COVID.metadata.xlsx").write_bytes(b"PK not really")
    return root


# ------------------------------------------------------------------------------------------------ Kermany


@pytest.mark.parametrize(("folder", "stem", "label", "patient"), [
    ("pneumonia", "person1000_bacteria_2931", "bacteria", "person1000"),
    ("pneumonia", "person1000_virus_1681", "virus", "person1000"),
    ("pneumonia", "person447_virus_921_1", "virus", "person447"),
    ("normal", "IM-0115-0001", "normal", "IM-0115"),
    ("normal", "NORMAL2-IM-0666-0001", "normal", "NORMAL2-IM-0666"),
    ("normal", "IM-0656-0001-0002", "normal", "IM-0656"),  # a patient's second image
    ("normal", "scan_17", "normal", None),
    ("pneumonia", "scan_18", "pneumonia", None),  # cause unknown: binary task only
])
def test_kermany_file_names(folder, stem, label, patient):
    assert kermany_label_and_patient(folder, stem) == (label, patient)


def test_kermany_reader(tiny_kermany):
    table = read_source(tiny_kermany)
    assert list(table.columns) == list(SOURCE_COLUMNS)
    assert set(table["source"]) == {"kermany"}
    assert set(table["official_split"]) == {"train", "val", "test"}
    assert set(table["fine_label"]) == {"normal", "bacteria", "virus"}
    assert table["patient_id"].str.startswith("kermany:").all() and table["patient_id_known"].all()
    row = table[table["path"].str.endswith("IM-0000-0002.jpeg")].iloc[0]
    assert row["patient_id"] == "kermany:IM-0000" and row["fine_label"] == "normal"
    # patients with two images: both images carry the same id
    assert (table.groupby("patient_id").size() == 2).any()
    expected = sum(1 for p in tiny_kermany.rglob("*.jpeg"))
    assert len(table) == expected and all(Path(p).is_absolute() for p in table["path"])


def test_kermany_found_from_parent_folder(tiny_kermany):
    layout, root = detect_layout(tiny_kermany.parent)
    assert layout == "kermany" and root == tiny_kermany


def test_kermany_nested_archive_folder(tmp_path, make_xray):
    for split in ("train", "test"):
        for cls, name in (("NORMAL", "IM-0001-0001.jpeg"), ("PNEUMONIA", "person1_virus_1.jpeg")):
            save_image(tmp_path / "download" / "chest_xray" / "chest_xray" / split / cls / name, make_xray(16))
    (tmp_path / "download" / "chest_xray" / "__MACOSX").mkdir()
    layout, root = detect_layout(tmp_path / "download")
    assert layout == "kermany" and root == tmp_path / "download" / "chest_xray" / "chest_xray"


# ------------------------------------------------------------------------------------------------ COVID-19 DB


@pytest.mark.parametrize("with_images_subfolder", [False, True])
def test_covid_radiography_reader(tmp_path, make_xray, with_images_subfolder):
    root = write_covid_db(tmp_path / "COVID-19_Radiography_Dataset", make_xray, with_images_subfolder)
    assert detect_layout(root)[0] == "covid_radiography"
    table = read_source(root)
    assert table["fine_label"].value_counts().to_dict() == {"covid": 3, "normal": 3, "virus": 3, "lung_opacity": 3}
    assert not table["patient_id_known"].any()
    assert table["patient_id"].is_unique and set(table["official_split"]) == {""}
    assert not table["path"].str.contains("/masks/").any()
    assert set(table["source"]) == {"covid_radiography"}


def test_covid_radiography_subset_with_two_classes(tmp_path, make_xray):
    for name in ("COVID-1.png", "COVID-2.png"):
        save_image(tmp_path / "covid" / "COVID" / name, make_xray(16))
    save_image(tmp_path / "covid" / "Normal" / "Normal-1.png", make_xray(16))
    assert detect_layout(tmp_path / "covid")[0] == "covid_radiography"


# ------------------------------------------------------------------------------------------------ class folders


def test_class_per_folder_tree(tmp_path, make_xray):
    for cls, n in (("healthy", 2), ("Bacterial Pneumonia", 2), ("covid-19", 1)):
        for k in range(n):
            save_image(tmp_path / "ds" / cls / "sub" / f"img{k}.png", make_xray(16, seed=k))
    (tmp_path / "ds" / "healthy" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "ds" / "healthy" / "Thumbs.db").write_bytes(b"\0")
    (tmp_path / "ds" / "healthy" / "notes.txt").write_text("not an image")
    layout, _ = detect_layout(tmp_path / "ds")
    assert layout == "folders"
    table = read_source(tmp_path / "ds")
    assert table["fine_label"].value_counts().to_dict() == {"normal": 3, "bacteria": 2, "covid": 1}
    assert table["path"].str.endswith("notes.txt").sum() == 1  # listed (the scan marks it), not dropped
    assert not table["path"].str.contains("DS_Store|Thumbs").any()  # OS clutter is not data
    assert table["patient_id"].is_unique and not table["patient_id_known"].any()


def test_class_folders_inside_split_folders(tmp_path, make_xray):
    for split in ("train", "test"):
        for cls in ("NORMAL", "PNEUMONIA", "COVID"):
            save_image(tmp_path / "ds" / split / cls / "a.png", make_xray(16))
    layout, _ = detect_layout(tmp_path / "ds")
    assert layout == "folders"  # not Kermany: a COVID class folder
    table = read_source(tmp_path / "ds")
    assert set(zip(table["official_split"], table["fine_label"], strict=True)) == {
        (s, c) for s in ("train", "test") for c in ("normal", "pneumonia", "covid")}


def test_unknown_class_folder_is_named(tmp_path, make_xray):
    for cls in ("normal", "cats"):
        save_image(tmp_path / "ds" / "train" / cls / "a.png", make_xray(16))
    with pytest.raises(DataError, match="unknown class folder 'cats'") as info:
        read_source(tmp_path / "ds")
    assert "cats" in str(info.value) and "Fix:" in str(info.value)


# ------------------------------------------------------------------------------------------------ CSV


def test_csv_manifest_with_relative_paths_patients_and_splits(tmp_path, make_xray):
    for name in ("a.png", "b.png", "c.png"):
        save_image(tmp_path / "imgs" / name, make_xray(16))
    csv = tmp_path / "list.csv"
    pd.DataFrame({"path": ["imgs/a.png", "imgs/b.png", str(tmp_path / "imgs" / "c.png")],
                  "label": ["NORMAL", "viral pneumonia", "COVID-19"],
                  "patient_id": ["p1", "p1", ""], "split": ["train", "validation", ""]}).to_csv(csv, index=False)
    assert detect_layout(csv) == ("csv", csv)
    table = read_source(csv)
    assert table["fine_label"].tolist() == ["normal", "virus", "covid"]
    assert table["patient_id"].tolist() == ["csv:p1", "csv:p1", "csv:c"]
    assert table["patient_id_known"].tolist() == [True, True, False]
    assert table["official_split"].tolist() == ["train", "val", ""]
    assert table["path"].tolist() == [str(tmp_path / "imgs" / n) for n in ("a.png", "b.png", "c.png")]


def test_csv_source_column_and_name(tmp_path):
    csv = tmp_path / "list.csv"
    csv.write_text("path,label,source\nx.png,normal,site_a\ny.png,normal,\n")
    table = read_csv_manifest(csv, name="hospital")
    assert table["source"].tolist() == ["site_a", "hospital"]


@pytest.mark.parametrize(("text", "message"), [
    ("file,label\na.png,normal\n", "lacks column\\(s\\) path"),
    ("path,diagnosis\na.png,normal\n", "lacks column\\(s\\) label"),
    ("image\na.png\n", "lacks column\\(s\\) path, label"),
    ("", "empty"),
    ("path,label\n", "no rows"),
    ("path,label\na.png,flu\n", "unknown label\\(s\\) 'flu'"),
    ("path,label\n,normal\n", "empty path"),
    ("path,label,split\na.png,normal,holdout\n", "unknown split 'holdout'"),
])
def test_bad_csv_is_a_clear_error(tmp_path, text, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        read_source(csv)
    assert str(csv) in str(info.value) and "Fix:" in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------ combining


def test_sources_combine_with_a_source_column(tiny_kermany, tmp_path, make_xray):
    covid = write_covid_db(tmp_path / "covid", make_xray, with_images_subfolder=False)
    table = read_sources([tiny_kermany, covid])
    assert set(table["source"]) == {"kermany", "covid_radiography"}
    assert table["path"].is_unique
    assert table.equals(read_sources([covid, tiny_kermany]))  # order of the arguments does not matter


def test_named_source(tiny_kermany):
    spec = parse_source(f"site1={tiny_kermany}")
    assert spec == SourceSpec(tiny_kermany, name="site1")
    table = read_sources([spec])
    assert set(table["source"]) == {"site1"} and table["patient_id"].str.startswith("site1:").all()


def test_same_files_twice_is_refused(tiny_kermany):
    with pytest.raises(DataError, match="listed twice"):
        read_sources([tiny_kermany, tiny_kermany.parent])


# ------------------------------------------------------------------------------------------------ bad layouts


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        read_source(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


def test_empty_class_folder_is_named(tmp_path, make_xray):
    save_image(tmp_path / "chest_xray" / "train" / "NORMAL" / "IM-0001-0001.jpeg", make_xray(16))
    (tmp_path / "chest_xray" / "train" / "PNEUMONIA").mkdir()
    with pytest.raises(DataError, match="class folder is empty") as info:
        read_source(tmp_path / "chest_xray")
    assert str(tmp_path / "chest_xray" / "train" / "PNEUMONIA") in str(info.value)


def test_unknown_layout(tmp_path, make_xray):
    save_image(tmp_path / "random" / "stuff" / "x.png", make_xray(16))
    save_image(tmp_path / "random" / "more" / "y.png", make_xray(16))
    with pytest.raises(DataError, match="unknown data set layout") as info:
        read_source(tmp_path / "random")
    assert "Kermany" in str(info.value)  # the fix lists the accepted layouts


def test_flat_folder_of_images_is_an_unknown_layout(tmp_path, make_xray):
    save_image(tmp_path / "flat" / "x.png", make_xray(16))
    save_image(tmp_path / "flat" / "y.png", make_xray(16))
    with pytest.raises(DataError, match="unknown data set layout"):
        read_source(tmp_path / "flat")


def test_folder_with_several_data_sets(tmp_path, tiny_kermany, make_xray):
    write_covid_db(tmp_path / "data" / "covid", make_xray, with_images_subfolder=False)
    save_image(tmp_path / "data" / "chest_xray" / "train" / "NORMAL" / "IM-0001-0001.jpeg", make_xray(16))
    with pytest.raises(DataError, match="several data sets"):
        read_source(tmp_path / "data")


def test_single_non_csv_file(tmp_path, make_xray):
    path = save_image(tmp_path / "one.png", make_xray(16))
    with pytest.raises(DataError, match="not a CSV"):
        read_source(path)


def test_no_sources():
    with pytest.raises(DataError, match="no data set"):
        read_sources([])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_written_manifest_reads_back_as_a_source(tiny_kermany, tmp_path, suffix):
    from pneumoscope.data.manifest import build_manifest, write_manifest
    from pneumoscope.data.splits import assign_splits

    original = assign_splits(build_manifest([tiny_kermany], progress=False), "binary", 0.3, seed=0)
    path = write_manifest(original, tmp_path / f"manifest{suffix}")
    again = read_source(path)
    columns = ["path", "source", "fine_label", "patient_id", "patient_id_known", "official_split"]
    pd.testing.assert_frame_equal(again[columns].reset_index(drop=True),
                                  original[columns].reset_index(drop=True), check_dtype=False)
