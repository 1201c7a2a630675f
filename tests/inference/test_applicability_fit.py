"""Fitting the applicability check on tiny synthetic populations, measuring it for a model, ``pneumoscope scope
fit``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from applicability_helpers import TINY_SETTINGS, write_tiny_populations
from typer.testing import CliRunner

from pneumoscope.cli.main import app
from pneumoscope.data.imaging import load_image
from pneumoscope.errors import ConfigError
from pneumoscope.inference.applicability_fit import (
    CARD_SECTION,
    check_input,
    fit_model_scope,
    fit_scope,
    split_images,
    train_check,
)
from pneumoscope.inference.applicability_runtime import ApplicabilityRunner
from pneumoscope.inference.loading import load_predictor
from pneumoscope.models.applicability import ApplicabilityCheck


@pytest.fixture(scope="module")
def populations(tmp_path_factory):
    return write_tiny_populations(tmp_path_factory.mktemp("populations"))


@pytest.fixture(scope="module")
def measured_check(populations) -> ApplicabilityCheck:
    manifest, adults = populations
    return train_check([manifest], [adults], TINY_SETTINGS, progress=False)


def test_val_patients_are_never_fitted_on_and_half_of_them_calibrates(populations) -> None:
    manifest, adults = populations
    split = split_images([manifest], [adults], TINY_SETTINGS)
    val = set(manifest.loc[manifest["split"].eq("val"), "patient_id"])
    assert not val & {i.key for i in split.fit if not i.adult}
    held = {i.key for i in (*split.calibration, *split.measure) if not i.adult}
    assert held == val and {i.key for i in split.calibration} and {i.key for i in split.measure}
    assert 0.25 <= sum(i.adult for i in (*split.calibration, *split.measure)) / 40 <= 0.55  # other_holdout 0.4


def test_the_fitted_check_tells_the_populations_apart_and_knows_what_it_saw(measured_check, populations) -> None:
    manifest, adults = populations
    runner = ApplicabilityRunner(measured_check, backend="pytorch")
    split = split_images([manifest], [adults], TINY_SETTINGS)
    measure = list(split.measure)
    results = runner.judge(np.stack([check_input(load_image(i.path), 32)[0] for i in measure]))
    p_adult = np.array([r.p_adult for r in results])
    labels = np.array([i.adult for i in measure])
    assert p_adult[labels == 1].mean() > p_adult[labels == 0].mean() + 0.3
    assert all(r.chest_xray_ok for r in results)
    assert {i.key for i in split.fit if not i.adult} <= measured_check.seen_patients
    assert not {i.key for i in split.measure} & (measured_check.seen_patients | measured_check.seen_files)


def test_measurement_covers_both_populations_and_non_radiographs(measured_check) -> None:
    rates = measured_check.measured["flag_rates"]
    assert {"validation images not fitted on (as is)", "validation images not fitted on (re-encoded)",
            "adults, held out (as is)", "adults, held out (re-encoded)"} <= set(rates)
    negatives = {name: rate for name, rate in rates.items() if name.startswith("not a radiograph")}
    assert len(negatives) >= 10 and any("pydicom" in name for name in negatives)
    assert all(rate["n"] > 0 and 0 <= rate["flag_rate"] <= 1 for rate in rates.values())
    blank = negatives["not a radiograph: blank"]
    assert blank["flag_rate"] == 1.0 and blank["reasons"] == {"not_a_chest_xray": blank["n"]}


def test_refitting_is_deterministic(tiny_check_file: Path, tmp_path: Path) -> None:
    manifest, adults = write_tiny_populations(tmp_path)
    again = train_check([manifest], [adults], TINY_SETTINGS, progress=False, measured=False)
    first = ApplicabilityCheck.load(tiny_check_file)
    assert again.sha256 == first.sha256 and again.adult_threshold == first.adult_threshold


def test_a_models_population_and_flag_rates_go_into_its_files(binary_run: Path, tmp_path: Path, populations,
                                                              tiny_check_file: Path) -> None:
    manifest, adults = populations
    run = shutil.copytree(binary_run, tmp_path / "run")
    (run / "MODEL_CARD.md").write_text("# tiny\n\n## Intended use\nTests.\n")
    written = fit_model_scope(run, manifest, ApplicabilityCheck.load(tiny_check_file), [adults], progress=False)
    meta = json.loads((run / "model.json").read_text())
    assert meta["population"]["name"] == "pediatric" and meta["scope"]["flag_rates"] == written["flag_rates"]
    assert written["validation_images_left_out"] > 0  # the check's calibration patients are not measured on
    card = (run / "MODEL_CARD.md").read_text()
    assert card.count(CARD_SECTION) == 1 and card.index(CARD_SECTION) < card.index("## Intended use")
    assert "children aged 1-5" in card and "| adults, held out (as is) |" in card
    predictor = load_predictor(run)
    assert predictor.population.name == "pediatric" and predictor.card["scope"]["measured"] == written["flag_rates"]
    fit_model_scope(run, manifest, ApplicabilityCheck.load(tiny_check_file), [adults], progress=False)
    assert (run / "MODEL_CARD.md").read_text().count(CARD_SECTION) == 1


def test_scope_fit_command_and_its_errors(binary_run: Path, tmp_path: Path, populations, monkeypatch,
                                         capsys) -> None:
    from pneumoscope.cli.main import main

    manifest, adults = populations
    run = shutil.copytree(binary_run, tmp_path / "run")
    manifest.to_csv(run / "manifest.csv", index=False)
    result = CliRunner().invoke(app, ["scope", "fit", str(run), "--other", str(adults), "--no-progress"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "population pediatric" in result.output and "flagged" in result.output
    with pytest.raises(ConfigError, match="1 model"):
        fit_scope([run], [], [adults])
    monkeypatch.setattr(sys, "argv", ["pneumoscope", "scope", "fit", str(tmp_path / "nothing"), "--other",
                                      str(adults)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and "not a model folder" in capsys.readouterr().err
