"""The data layer's figures on the real data in ../shared/data (scanned once per session)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pneumoscope.data.splits import assign_splits, check_leakage
from pneumoscope.data.summary import count_table, patient_totals

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def kermany(real_manifest):
    return real_manifest[real_manifest["source"] == "kermany"].copy()


@pytest.fixture(scope="module")
def folds_3class(kermany):
    return assign_splits(kermany, "3class", val_fraction=0.15, seed=42, folds=5)


def test_every_file_is_read(real_manifest):
    assert (real_manifest["status"] == "ok").all(), real_manifest.loc[real_manifest["status"] != "ok", "error"]


def test_inspect_counts_match_the_published_figures(real_manifest):
    table = count_table(real_manifest).set_index(["source", "split"])
    train = table.loc[("kermany", "train")]
    assert (train["normal"], train["pneumonia_all"]) == (1341, 3875)
    assert (train["bacteria"], train["virus"]) == (2530, 1345)
    val = table.loc[("kermany", "val")]
    assert (val["normal"], val["pneumonia_all"]) == (8, 8)
    covid = table.loc[("covid_radiography", "-")]
    assert (covid["covid"], covid["normal"]) == (2000, 1000)


def test_patient_count_follows_the_file_name_rule(real_data, real_manifest):
    """The README's rule, applied here independently: ``personN_...`` → personN; ``[NORMAL2-]IM-NNNN-...`` →
    the part before the image number(s)."""
    names = [p.name for p in (real_data / "chest_xray").rglob("*.jpeg")]
    patients = {n.split("_")[0] if n.startswith("person") else re.match(r"(NORMAL2-)?IM-\d+", n).group(0)
                for n in names}
    totals = patient_totals(real_manifest).set_index("source")
    assert totals.loc["kermany", "patients"] == len(patients)
    assert totals.loc["kermany", "images_without_patient_id"] == 0
    assert totals.loc["covid_radiography", "patients"] == "-"  # the database has no patient ids


def test_3class_five_folds_share_no_patient_and_keep_proportions(folds_3class):
    s = folds_3class
    in_folds = s[s["fold"] >= 0]
    assert sorted(in_folds["fold"].unique()) == [0, 1, 2, 3, 4]
    assert (in_folds.groupby("patient_id")["fold"].nunique() == 1).all()
    assert (in_folds.groupby("sha256")["fold"].nunique() == 1).all()
    whole = in_folds["label_3class"].value_counts(normalize=True)
    for _, fold in in_folds.groupby("fold"):
        gap = (fold["label_3class"].value_counts(normalize=True) - whole).abs().max()
        assert gap < 0.02
    assert (s.groupby("patient_id")["split"].nunique() == 1).all()
    assert (s.loc[s["official_split"] == "val", "split"] == "val").all()
    assert abs((s["split"] == "val").mean() - 0.15) < 0.02


def test_same_seed_same_split(kermany, folds_3class):
    again = assign_splits(kermany.iloc[::-1], "3class", val_fraction=0.15, seed=42, folds=5).loc[folds_3class.index]
    assert (again["split"] == folds_3class["split"]).all() and (again["fold"] == folds_3class["fold"]).all()


def test_kermany_plus_covid_gives_a_4class_manifest(real_manifest):
    s = assign_splits(real_manifest, "4class", val_fraction=0.15, seed=0)
    assert set(s["source"]) == {"kermany", "covid_radiography"}
    used = s[s["split"].isin(["train", "val"])]
    assert set(used["label_4class"]) == {"normal", "bacteria", "virus", "covid"}
    per_source = used.groupby("source")["label_4class"].unique().map(set).to_dict()
    assert per_source == {"kermany": {"normal", "bacteria", "virus"}, "covid_radiography": {"normal", "covid"}}
    for source in ("kermany", "covid_radiography"):
        assert set(s.loc[s["source"] == source, "split"]) == {"train", "val"}
    check_leakage(s)


def test_full_resolution_sample_reads_as_kermany(real_data):
    from pneumoscope.data.manifest import build_manifest

    m = build_manifest([real_data / "chest_xray_fullres_sample"], progress=False)
    assert len(m) == 60 and (m["status"] == "ok").all() and (m["source"] == "kermany").all()
    assert m["width"].min() > 224 and Path(m["path"].iat[0]).is_file()
