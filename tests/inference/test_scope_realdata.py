"""The shipped applicability check on real images it was not fitted on: adults flagged for the pediatric models,
children in scope, CT / MR and other non-radiographs never in scope."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from pneumoscope.data.sources import read_source
from pneumoscope.inference import bundled
from pneumoscope.inference.applicability_fit import file_key
from pneumoscope.inference.loading import load_predictor
from pneumoscope.inference.negatives import negative_inputs
from pneumoscope.inference.predictor import Predictor
from pneumoscope.inference.sources import iter_image_files
from pneumoscope.models.applicability import ApplicabilityCheck, shipped_check_path

SHIPPED = sorted(p.name for p in bundled.package_bundled_dir().iterdir() if (p / "model.json").is_file())


@pytest.fixture(scope="module", params=SHIPPED)
def model(request) -> Predictor:
    return load_predictor(request.param, applicability=shipped_check_path())


@pytest.fixture(scope="module")
def unseen(real_data: Path) -> dict[str, list[Path]]:
    """Children (validation patients of the bundled models that the check was neither fitted nor calibrated on)
    and adults (held out, not calibrated on), 150 of each."""
    check = ApplicabilityCheck.load(shipped_check_path())
    kermany = read_source(real_data / "chest_xray")
    children = sorted(kermany.loc[~kermany["patient_id"].isin(check.seen_patients), "path"])
    adults = sorted(p for p in iter_image_files([real_data / "covid19_radiography"])
                    if file_key(p) not in check.seen_files)
    rng = np.random.default_rng(0)
    return {name: [Path(p) for p in rng.choice(paths, 150, replace=False)]
            for name, paths in (("children", children), ("adults", adults))}


def test_every_bundled_model_is_pediatric_and_checked(model: Predictor) -> None:
    assert model.population.name == "pediatric" and model.card["scope"]["population_check"] is True
    assert "Guangzhou" in model.population.description


@pytest.mark.realdata
def test_held_out_adults_are_flagged_as_adults(model: Predictor, unseen) -> None:
    rows = list(model.predict_files(unseen["adults"], batch_size=32))
    adult = np.mean([not r["in_scope"] and "adult" in r["scope_reason"] for r in rows])
    assert adult >= 0.95, adult


@pytest.mark.realdata
def test_children_not_fitted_on_are_in_scope(model: Predictor, unseen) -> None:
    rows = list(model.predict_files(unseen["children"], batch_size=32))
    flagged = [(r["path"], r["scope_reason"]) for r in rows if not r["in_scope"]]
    assert len(flagged) / len(rows) <= 0.01, flagged


@pytest.mark.realdata
def test_the_archives_other_formats_are_in_scope(model: Predictor, real_data: Path) -> None:
    paths = [*iter_image_files([real_data / "chest_xray" / "val"]),  # official val: full-resolution originals
             *iter_image_files([real_data / "chest_xray_fullres_sample"])]
    rows = list(model.predict_files(paths, batch_size=16))
    flagged = [(r["path"], r["scope_reason"]) for r in rows if not r["in_scope"]]
    assert len(flagged) <= 1, flagged


@pytest.mark.parametrize(("name", "reason"), [("CT_small.dcm", "modality CT"), ("MR_small.dcm", "modality MR")])
def test_ct_and_mr_files_are_never_in_scope(model: Predictor, name: str, reason: str) -> None:
    row = next(model.predict_files([get_testdata_file(name)]))
    assert row["error"] == "" and row["in_scope"] is False and row["scope_reason"].startswith(reason)
    assert row["scope_checks"]["modality"]["ok"] is False


def test_no_non_radiograph_is_in_scope_even_without_its_header() -> None:
    model = load_predictor(bundled.default_model_name(), applicability=shipped_check_path())
    with tempfile.TemporaryDirectory() as folder:
        inputs = negative_inputs(Path(folder), per_kind=10, seed=3)
    for kind, loaded in inputs.items():
        results = model.predict_arrays(loaded)
        missed = [r["scope_checks"] for r in results if r["in_scope"]]
        assert not missed, (kind, missed[:2])
        assert all(r["scope_reason"] == "not_a_chest_xray" for r in results), kind
