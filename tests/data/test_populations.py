"""A model's training population from the sources of its training rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pneumoscope.data.populations import (
    ADULT,
    MIXED,
    PEDIATRIC,
    UNKNOWN,
    Population,
    manifest_population,
    recorded_population,
    training_population,
)


def test_known_sources_give_their_population() -> None:
    kermany = training_population(["kermany", "kermany"])
    assert kermany.name == PEDIATRIC and kermany.age_range_years == (1.0, 5.0) and "Guangzhou" in kermany.description
    assert training_population(["covid_radiography"]).name == ADULT


def test_both_populations_are_mixed_and_unknown_sources_unknown() -> None:
    mixed = training_population(["kermany", "covid_radiography"])
    assert mixed.name == MIXED and not mixed.checked and mixed.age_range_years is None
    unknown = training_population(["kermany", "folders"])
    assert unknown.name == UNKNOWN and "folders" in unknown.description and not unknown.checked
    assert training_population([]).name == UNKNOWN


def test_only_train_rows_count() -> None:
    rows = pd.DataFrame({"split": ["train", "train", "val", "test"],
                         "source": ["kermany", "kermany", "covid_radiography", "covid_radiography"]})
    assert manifest_population(rows).name == PEDIATRIC


def test_round_trip_and_malformed_entries() -> None:
    population = training_population(["kermany"])
    assert Population.from_dict(population.as_dict()) == population
    assert Population.from_dict({"name": "martian"}).name == UNKNOWN
    assert Population.from_dict(None).name == UNKNOWN
    assert Population.from_dict({"name": ADULT, "age_range_years": ["x"]}).age_range_years is None


def test_recorded_population_falls_back_to_the_run_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"path": ["a.png"], "split": ["train"], "source": ["covid_radiography"]}).to_csv(manifest)
    assert recorded_population({}, manifest).name == ADULT
    assert recorded_population({"population": training_population(["kermany"]).as_dict()}, manifest).name == PEDIATRIC
    assert recorded_population({}, tmp_path / "missing.csv").name == UNKNOWN
