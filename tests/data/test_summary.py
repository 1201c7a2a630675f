"""Summary tables of inspect / split, computed on the tiny synthetic Kermany tree (its counts known by design)."""

from __future__ import annotations

import pandas as pd
import pytest

from pneumoscope.data.manifest import build_manifest
from pneumoscope.data.splits import assign_splits
from pneumoscope.data.summary import (
    count_table,
    duplicate_table,
    fold_table,
    inspect_tables,
    patient_totals,
    render,
    size_table,
    split_table,
)


@pytest.fixture(scope="module")
def manifest(tiny_kermany):
    return build_manifest([tiny_kermany], progress=False)


def expected_counts(tiny_kermany, split: str) -> dict[str, int]:
    names = [p.name for p in (tiny_kermany / split).rglob("*.jpeg")]
    return {"normal": sum("IM-" in n for n in names), "bacteria": sum("bacteria" in n for n in names),
            "virus": sum("virus" in n for n in names)}


def test_count_table_matches_the_files(manifest, tiny_kermany):
    table = count_table(manifest).set_index("split")
    for split in ("train", "val", "test"):
        expected = expected_counts(tiny_kermany, split)
        row = table.loc[split]
        assert {k: int(row[k]) for k in expected} == expected
        assert int(row["pneumonia_all"]) == expected["bacteria"] + expected["virus"]
        assert int(row["unreadable"]) == 0
    train_patients = manifest.loc[manifest["official_split"] == "train", "patient_id"].nunique()
    assert int(table.loc["train", "patients"]) == train_patients


def test_patients_sizes_and_duplicates(manifest):
    totals = patient_totals(manifest).set_index("source")
    assert int(totals.loc["kermany", "patients"]) == manifest["patient_id"].nunique()
    sizes = size_table(manifest).iloc[0]
    assert sizes["most_common_size"] == f"64x64 ({len(manifest)})" and sizes["formats"] == f"jpeg {len(manifest)}"
    dups = duplicate_table(manifest).set_index("duplicates")["count"]
    assert dups["sets of identical files"] == manifest["sha256"].duplicated().sum()


def test_duplicates_are_counted(manifest):
    copy = manifest.copy()
    copy.loc[copy.index[1], "sha256"] = copy.loc[copy.index[0], "sha256"]
    copy.loc[copy.index[1], "patient_id"] = "kermany:someone-else"
    dups = duplicate_table(copy).set_index("duplicates")["count"]
    assert dups["sets of identical files"] == 1 and dups["sets spanning two patient ids"] == 1


def test_split_and_fold_tables(manifest):
    s = assign_splits(manifest, "3class", 0.3, seed=0, folds=2)
    table = split_table(s, "3class").set_index("split")
    for split in ("train", "val", "test"):
        part = s[s["split"] == split]
        assert table.loc[split, "total"] == len(part)
        assert table.loc[split, "patients"] == part["patient_id"].nunique()
        assert table.loc[split, "normal"].startswith(f"{(part['label_3class'] == 'normal').sum()} (")
    folds = fold_table(s, "3class")
    assert folds["fold"].tolist() == [0, 1, "all"]
    assert (folds["shared_patients"] == 0).all()
    assert folds.loc[folds["fold"] != "all", "images"].sum() == (s["fold"] >= 0).sum()


def test_every_inspect_table_renders(manifest):
    from rich.console import Console

    console = Console(width=200, record=True)
    for name, table in inspect_tables(manifest).items():
        assert isinstance(table, pd.DataFrame)
        console.print(render(table, name))
    assert "kermany" in console.export_text()


def test_split_table_by_source_counts_images_without_patient_ids(manifest):
    other = manifest.copy()
    other["source"] = "covid_radiography"
    other["patient_id_known"] = False
    other["path"] = other["path"] + ".copy"
    both = assign_splits(pd.concat([manifest, other], ignore_index=True), "binary", 0.3, seed=0)
    table = split_table(both, "binary", by_source=True).set_index(["split", "source"])
    train_other = both[(both["split"] == "train") & (both["source"] == "covid_radiography")]
    assert table.loc[("train", "covid_radiography"), "no_patient_id"] == len(train_other)
    assert table.loc[("train", "covid_radiography"), "patients"] == 0
    assert table.loc[("train", "kermany"), "no_patient_id"] == 0
