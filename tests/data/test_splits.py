"""Splits: patient-grouped, stratified, deterministic; official test/val respected; identical images kept together;
k-fold; and the leakage check failing on planted leaks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pneumoscope.data.manifest import add_task_labels, build_manifest, normalise_manifest
from pneumoscope.data.splits import assign_splits, check_leakage, split_groups
from pneumoscope.errors import ConfigError, LeakageError


def synthetic_manifest(patients: int = 120, seed: int = 0, source: str = "site", official: str = "") -> pd.DataFrame:
    """A manifest table (no files needed: splitting only reads the table) with 1-3 images per patient and
    classes normal / bacteria / virus in about 2:2:1."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        label = ("normal", "bacteria", "virus", "normal", "bacteria")[p % 5]
        for k in range(int(rng.integers(1, 4))):
            rows.append({"path": f"/data/{source}/{label}/p{p}_{k}.png", "source": source, "fine_label": label,
                         "patient_id": f"{source}:p{p}", "patient_id_known": True, "official_split": official,
                         "sha256": f"{source}-{p}-{k}", "status": "ok"})
    return normalise_manifest(add_task_labels(pd.DataFrame(rows)))


def shared(table: pd.DataFrame, key: str, side: str) -> int:
    assigned = table[table["split"].isin(["train", "val", "test"])] if side == "split" else table[table["fold"] >= 0]
    return int((assigned.groupby(key)[side].nunique() > 1).sum())


def test_val_carve_out_is_patient_grouped_and_stratified():
    m = synthetic_manifest(300)
    s = assign_splits(m, "3class", val_fraction=0.2, seed=1)
    assert set(s["split"]) == {"train", "val"}
    assert shared(s, "patient_id", "split") == 0
    val_share = (s["split"] == "val").mean()
    assert abs(val_share - 0.2) < 0.03
    whole = s["label_3class"].value_counts(normalize=True)
    val = s.loc[s["split"] == "val", "label_3class"].value_counts(normalize=True)
    assert (val - whole).abs().max() < 0.03


def test_same_seed_same_split_regardless_of_row_order():
    m = synthetic_manifest(150)
    a = assign_splits(m, "3class", 0.15, seed=7, folds=3)
    b = assign_splits(m.sample(frac=1.0, random_state=3), "3class", 0.15, seed=7, folds=3).loc[a.index]
    pd.testing.assert_frame_equal(a[["split", "fold"]], b[["split", "fold"]])
    c = assign_splits(m, "3class", 0.15, seed=8, folds=3)
    assert not (a["split"] == c["split"]).all()


def test_folds_are_patient_grouped_and_cover_all_non_test_rows():
    m = synthetic_manifest(200)
    s = assign_splits(m, "3class", 0.15, seed=0, folds=5)
    assert sorted(s["fold"].unique()) == [0, 1, 2, 3, 4]
    assert shared(s, "patient_id", "fold") == 0
    whole = s["label_3class"].value_counts(normalize=True)
    for _, part in s.groupby("fold"):
        assert (part["label_3class"].value_counts(normalize=True) - whole).abs().max() < 0.05


def test_identical_images_of_two_patients_stay_on_one_side():
    m = synthetic_manifest(200)
    twins = m.index[:60:2]
    m.loc[twins, "sha256"] = [f"dup{i}" for i in range(len(twins))]
    partners = m.index[100:160:2]  # other patients' images with the same bytes
    m.loc[partners, "sha256"] = [f"dup{i}" for i in range(len(partners))]
    groups = split_groups(m)
    assert all(groups[i] == groups[j] for i, j in zip(twins, partners, strict=True))
    for seed in range(5):
        s = assign_splits(m, "3class", 0.3, seed=seed, folds=3)
        assert shared(s, "sha256", "split") == 0 and shared(s, "sha256", "fold") == 0


def test_official_test_stays_and_official_val_joins_val():
    train = synthetic_manifest(100, source="k", official="train")
    test = synthetic_manifest(20, seed=1, source="k", official="test")
    test["patient_id"] = test["patient_id"] + "_t"
    test["sha256"] = test["sha256"] + "_t"
    val = synthetic_manifest(4, seed=2, source="k", official="val")
    val["patient_id"] = train["patient_id"].iloc[:len(val)].to_numpy()  # val patients also have train images
    val["sha256"] = val["sha256"] + "_v"
    m = pd.concat([train, test, val], ignore_index=True)
    s = assign_splits(m, "3class", 0.15, seed=0, folds=3)
    assert (s.loc[s["official_split"] == "test", "split"] == "test").all()
    assert (s.loc[s["split"] == "test", "official_split"] == "test").all()
    assert (s.loc[s["official_split"] == "val", "split"] == "val").all()
    val_patients = set(s.loc[s["official_split"] == "val", "patient_id"])
    assert (s.loc[s["patient_id"].isin(val_patients), "split"] == "val").all()  # their train images follow
    assert (s.loc[s["split"] == "test", "fold"] == -1).all()


def test_train_image_of_a_test_patient_is_excluded():
    m = synthetic_manifest(60, official="train")
    test = synthetic_manifest(10, seed=1, official="test")
    test["sha256"] = test["sha256"] + "_t"  # same patient ids as train p0..p9: the archive leaks
    s = assign_splits(pd.concat([m, test], ignore_index=True), "3class", 0.2, seed=0)
    leaked_train = s[(s["official_split"] == "train") & s["patient_id"].isin(test["patient_id"])]
    assert len(leaked_train) and (leaked_train["split"] == "excluded").all()


def test_test_fraction_only_from_sources_without_official_test():
    with_test = pd.concat([synthetic_manifest(60, source="a", official="train"),
                           synthetic_manifest(10, seed=1, source="a", official="test")], ignore_index=True)
    with_test.loc[with_test["official_split"] == "test", "patient_id"] += "_t"
    with_test.loc[with_test["official_split"] == "test", "sha256"] += "_t"
    without = synthetic_manifest(100, seed=2, source="b")
    s = assign_splits(pd.concat([with_test, without], ignore_index=True), "3class", 0.15, seed=0,
                      test_fraction=0.2)
    b_test_share = (s.loc[s["source"] == "b", "split"] == "test").mean()
    assert abs(b_test_share - 0.2) < 0.04
    assert (s.loc[(s["source"] == "a") & (s["split"] == "test"), "official_split"] == "test").all()
    with pytest.raises(ConfigError, match="official test"):
        assign_splits(with_test, "3class", 0.15, seed=0, test_fraction=0.2)


def test_rows_outside_the_task_or_unreadable_are_excluded():
    m = synthetic_manifest(50)
    m.loc[m.index[:3], "status"] = "error"
    covid = m.index[m["patient_id"].isin(m["patient_id"].iloc[3:].unique()[:2])]  # two patients' images
    m.loc[covid, ["fine_label", "label_binary", "label_3class", "label_4class"]] = ["covid", "pneumonia", "", "covid"]
    s = assign_splits(m, "3class", 0.2, seed=0)
    assert (s.loc[m.index[:3].union(covid), "split"] == "excluded").all()
    s4 = assign_splits(m, "4class", 0.2, seed=0)
    assert (s4.loc[covid, "split"] != "excluded").all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"val_fraction": 0.0}, "val_fraction"), ({"val_fraction": 1.2}, "val_fraction"),
    ({"test_fraction": 0.9}, "test_fraction"), ({"folds": 1}, "folds"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        assign_splits(synthetic_manifest(20), "3class", **{"val_fraction": 0.15, **kwargs})


def test_more_folds_than_patients():
    with pytest.raises(ConfigError, match="folds need at least"):
        assign_splits(synthetic_manifest(10), "3class", 0.3, folds=20)


def one_image_per_patient(counts: dict[str, int]) -> pd.DataFrame:
    rows = [{"path": f"/d/{label}/{i}.png", "source": "folders", "fine_label": label, "patient_id": f"{label}{i}",
             "patient_id_known": True, "official_split": "", "sha256": f"{label}-{i}", "status": "ok"}
            for label, n in counts.items() for i in range(n)]
    return normalise_manifest(add_task_labels(pd.DataFrame(rows)))


@pytest.mark.parametrize("per_class", [2, 3, 6, 9])
@pytest.mark.parametrize("seed", [0, 1, 42])
def test_small_data_sets_get_a_split_with_every_class_on_both_sides(per_class, seed):
    """A handful of images per class (fewer than the carve's folds) still splits, patient-grouped."""
    s = assign_splits(one_image_per_patient({"normal": per_class, "pneumonia": per_class}), "binary", 0.15, seed)
    for side in ("train", "val"):
        assert set(s.loc[s["split"] == side, "label_binary"]) == {"normal", "pneumonia"}, (side, s["split"].tolist())
    assert shared(s, "patient_id", "split") == 0


@pytest.mark.parametrize(("counts", "found"), [
    ({"normal": 1, "pneumonia": 1}, "normal: 1 patient (1 image), pneumonia: 1 patient (1 image)"),
    ({"normal": 5, "bacteria": 1}, "pneumonia: 1 patient (1 image)"),
])
def test_too_few_patients_for_a_validation_split_is_a_clear_error(counts, found):
    with pytest.raises(ConfigError, match="at least 2 patients") as info:
        assign_splits(one_image_per_patient(counts), "binary", 0.15, 0)
    assert found in str(info.value) and "Fix:" in str(info.value)


def test_folds_need_a_patient_of_every_class_per_fold():
    manifest = one_image_per_patient({"normal": 12, "pneumonia": 3})
    with pytest.raises(ConfigError, match="5 folds need at least 5 patients of every class") as info:
        assign_splits(manifest, "binary", 0.15, 0, folds=5)
    assert "pneumonia: 3" in str(info.value)
    folds = assign_splits(manifest, "binary", 0.15, 0, folds=3)
    assert sorted(folds["fold"].unique()) == [0, 1, 2]


def test_tiny_kermany_split(tiny_kermany):
    m = build_manifest([tiny_kermany], progress=False)
    s = assign_splits(m, "binary", 0.3, seed=42)
    assert set(s["split"]) == {"train", "val", "test"}
    assert (s.loc[s["official_split"] == "val", "split"] == "val").all()
    for split in ("train", "val"):
        assert set(s.loc[s["split"] == split, "label_binary"]) == {"normal", "pneumonia"}


# ------------------------------------------------------------------------------------------------ leakage check


def split_manifest() -> pd.DataFrame:
    return assign_splits(synthetic_manifest(80), "3class", 0.25, seed=0, folds=4)


def test_clean_split_passes():
    check_leakage(split_manifest())


def test_planted_patient_leak_fails():
    s = split_manifest()
    val_patient = s.loc[s["split"] == "val", "patient_id"].iat[0]
    row = s.index[s["split"] == "train"][0]
    s.loc[row, "patient_id"] = val_patient
    with pytest.raises(LeakageError, match=f"1 patient\\(s\\) in several splits \\(e.g. {val_patient} in train and"):
        check_leakage(s)


def test_planted_identical_image_fails():
    s = split_manifest()
    s.loc[s.index[s["split"] == "train"][0], "sha256"] = s.loc[s["split"] == "val", "sha256"].iat[0]
    with pytest.raises(LeakageError, match="identical image"):
        check_leakage(s)


def test_patient_in_two_folds_fails():
    s = split_manifest()
    a = s.index[s["fold"] == 0][0]
    b = s.index[(s["fold"] == 1) & (s["split"] == s.loc[a, "split"])][0]
    s.loc[b, "patient_id"] = s.loc[a, "patient_id"]
    with pytest.raises(LeakageError, match="several folds"):
        check_leakage(s)


def test_excluded_rows_do_not_count_as_a_side():
    s = split_manifest()
    row = s.index[s["split"] == "train"][0]
    s.loc[row, "split"] = "excluded"
    s.loc[row, "fold"] = -1
    s.loc[row, "patient_id"] = s.loc[s["split"] == "val", "patient_id"].iat[0]
    check_leakage(s)


def test_sample_patients_keeps_class_shares_when_patients_hold_several_classes():
    """Kermany has children with both bacterial and viral images: their images must count towards both classes."""
    from pneumoscope.data.splits import sample_patients

    rng = np.random.default_rng(0)
    patients, labels = [], []
    for i in range(300):  # 25 % normal, 50 % bacteria, 25 % virus, a third of the pneumonia patients mixed
        kind = rng.choice(["normal", "bacteria", "virus"], p=[0.25, 0.5, 0.25])
        images = [kind] * 2 if kind == "normal" else [kind, kind, "virus" if i % 3 == 0 else kind]
        patients += [f"p{i}"] * len(images)
        labels += images
    patients, labels = pd.Series(patients), pd.Series(labels)
    chosen = sample_patients(patients, labels, max_images=240, seed=1)
    kept = labels[patients.isin(chosen)]
    full, sample = labels.value_counts(normalize=True), kept.value_counts(normalize=True)
    assert abs(len(kept) - 240) <= 5
    assert (full - sample).abs().max() < 0.02, (full.round(3).to_dict(), sample.round(3).to_dict())
    assert chosen == sample_patients(patients, labels, max_images=240, seed=1)
