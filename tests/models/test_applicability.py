"""The applicability check's parts: the network, the chest X-ray reference, storage, and the scope verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pneumoscope.data.dicom_header import DicomHeader, header_checks
from pneumoscope.data.populations import ADULT, MIXED, PEDIATRIC, UNKNOWN_POPULATION, Population
from pneumoscope.errors import ModelError
from pneumoscope.models import scope
from pneumoscope.models.applicability import (
    APPLICABILITY_ENV,
    APPLICABILITY_FILE,
    ApplicabilityCheck,
    CheckResult,
    applicability_input,
    build_network,
    check_path_for,
    fit_feature_reference,
    shipped_check_path,
)

CHILDREN = Population(PEDIATRIC, "children aged 1-5", (1.0, 5.0))
ADULTS = Population(ADULT, "adults", (18.0, 120.0))


def small_check(rng: np.random.Generator, size: int = 32) -> ApplicabilityCheck:
    """A check with a random-init network and a reference of random 448-d embeddings."""
    torch.manual_seed(0)
    weights = {k: v.numpy().copy() for k, v in build_network().state_dict().items()}
    reference = fit_feature_reference(rng.normal(size=(200, 448)), n_components=8)
    return ApplicabilityCheck(weights, reference, adult_threshold=0.9, child_threshold=0.1, input_size=size,
                              seen_patients=frozenset({"kermany:p1"}), seen_files=frozenset({"COVID/a.png"}),
                              measured={"flag_rates": {"x": {"n": 3, "flagged": 1, "flag_rate": 0.333}}})


def test_network_outputs_an_embedding_and_a_logit_and_only_the_top_is_fitted() -> None:
    net = build_network()
    embedding, logit = net(torch.rand(3, 1, 32, 32))
    assert embedding.shape == (3, 448) and logit.shape == (3,)
    fitted = {id(p) for p in net.fitted_parameters()}
    frozen = [p for block in net.blocks[:5] for p in block.parameters()]
    assert frozen and not any(id(p) in fitted for p in frozen)
    assert all(id(p) in fitted for p in net.logit.parameters())


def test_input_is_the_thumbnail_shrunk(rng) -> None:
    thumbnail = rng.uniform(0, 1, (128, 128)).astype(np.float32)
    x = applicability_input(thumbnail, 96)
    assert x.shape == (96, 96) and x.dtype == np.float32 and abs(float(x.mean()) - float(thumbnail.mean())) < 0.01


def test_reference_separates_shifted_features() -> None:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(8, 64))
    train = rng.normal(size=(600, 8)) @ basis + 0.05 * rng.normal(size=(600, 64))
    same = rng.normal(size=(200, 8)) @ basis + 0.05 * rng.normal(size=(200, 64))
    shifted = same + rng.normal(0, 1.0, size=(200, 64))  # leaves the subspace of the fitted features
    reference = fit_feature_reference(train, n_components=8)
    reference.threshold = float(1.5 * np.quantile(reference.distance(same[:100]), 0.99))
    assert (reference.score(same[100:]) >= 1).mean() <= 0.02
    assert (reference.score(shifted) >= 1).mean() >= 0.98


def test_round_trip_through_safetensors(tmp_path: Path, rng) -> None:
    check = small_check(rng)
    path = check.save(tmp_path)
    assert path == tmp_path / APPLICABILITY_FILE and path.read_bytes()[8:9] == b"{"  # safetensors header, no pickle
    loaded = ApplicabilityCheck.load(path)
    assert (loaded.adult_threshold, loaded.child_threshold, loaded.input_size) == (0.9, 0.1, 32)
    assert loaded.seen_patients == check.seen_patients and loaded.seen_files == check.seen_files
    assert loaded.measured == check.measured and loaded.sha256 == check.sha256
    embeddings = rng.normal(size=(5, 448))
    np.testing.assert_allclose(loaded.reference.score(embeddings), check.reference.score(embeddings), rtol=1e-4)
    x = torch.rand(2, 1, 32, 32)
    with torch.inference_mode():
        np.testing.assert_allclose(loaded.network()(x)[1].numpy(), check.network()(x)[1].numpy(), atol=2e-2)


def test_results_turn_outputs_into_scores_and_probabilities(rng) -> None:
    check = small_check(rng)
    results = check.results(np.concatenate([check.reference.mean[None], rng.normal(0, 50, (1, 448))]),
                            np.array([-3.0, 3.0]))
    assert results[0].chest_xray_ok and not results[1].chest_xray_ok
    assert results[0].p_adult == pytest.approx(1 / (1 + np.exp(3))) and results[1].p_adult > 0.95


def test_unreadable_or_missing_files_are_model_errors_naming_the_fix(tmp_path: Path) -> None:
    (tmp_path / APPLICABILITY_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="unreadable applicability check") as error:
        ApplicabilityCheck.load(tmp_path)
    assert "scope fit" in str(error.value)
    with pytest.raises(ModelError, match="not found"):
        ApplicabilityCheck.load(tmp_path / "missing.safetensors")


def test_which_check_a_model_uses(tmp_path: Path, monkeypatch, rng) -> None:
    monkeypatch.delenv(APPLICABILITY_ENV, raising=False)
    own = tmp_path / "run"
    own.mkdir()
    assert check_path_for(own) == (shipped_check_path() if shipped_check_path().is_file() else None)
    small_check(rng).save(own)
    assert check_path_for(own) == own / APPLICABILITY_FILE
    monkeypatch.setenv(APPLICABILITY_ENV, str(tmp_path / "chosen.safetensors"))
    assert check_path_for(own) == tmp_path / "chosen.safetensors"


# ------------------------------------------------------------------------------------------------ the verdict


def dicom(**fields) -> DicomHeader:
    header = DicomHeader(**fields)
    return DicomHeader(header.modality, header.body_part, header.view, header.frames, header.patient_age,
                       header_checks(header))


def verdict(header: DicomHeader | None = None, image_score: float = 0.1, distance: float = 0.3,
            p_adult: float | None = 0.1, population: Population = CHILDREN) -> scope.ScopeVerdict:
    check = small_check(np.random.default_rng(0))
    result = None if p_adult is None else CheckResult(distance, p_adult)
    return scope.verdict(header, (image_score, ("colour image",) if image_score >= 1 else ()), result,
                         None if result is None else check, population)


def test_in_scope_verdict_has_every_check_and_no_reason() -> None:
    fields = verdict(dicom(modality="DX", view="PA", patient_age="004Y")).as_fields()
    assert fields["in_scope"] is True and fields["scope_reason"] == "" and fields["scope_detail"] == ""
    assert list(fields["scope_checks"]) == ["modality", "body_part", "image", "chest_xray", "view", "frames", "age",
                                            "population"]


def test_reasons_in_check_order() -> None:
    assert verdict(p_adult=0.95).reason == "adult"
    assert verdict(dicom(modality="CT"), distance=3.0).reason == "modality CT; not_a_chest_xray"
    assert verdict(dicom(view="LL"), p_adult=0.95).reason == "lateral; adult"
    assert verdict(dicom(frames=4)).reason == "multi-frame"
    assert verdict(image_score=2.0).reason == "not_a_chest_xray"
    assert "colour image" in verdict(image_score=2.0).as_fields()["scope_detail"]


def test_population_reasons_are_dropped_for_non_xrays() -> None:
    result = verdict(dicom(patient_age="060Y"), distance=5.0, p_adult=0.99)
    assert result.reason == "not_a_chest_xray" and not result.in_scope


def test_the_population_is_compared_with_the_models() -> None:
    assert verdict(p_adult=0.95, population=CHILDREN).reason == "adult"
    assert verdict(p_adult=0.95, population=ADULTS).in_scope  # an adult model: adults are its population
    assert verdict(p_adult=0.05, population=ADULTS).reason == "child"
    assert verdict(p_adult=0.05, population=CHILDREN).in_scope
    for population in (UNKNOWN_POPULATION, Population(MIXED, "children and adults")):
        result = verdict(p_adult=0.99, population=population)
        check = result.as_fields()["scope_checks"]["population"]
        assert result.in_scope and check["ok"] and check["detail"].startswith("not checked")
    missing = verdict(p_adult=None).as_fields()["scope_checks"]
    assert "chest_xray" not in missing and "no applicability check" in missing["population"]["detail"]


def test_patient_age_against_the_trained_ages() -> None:
    assert verdict(dicom(patient_age="045Y")).reason == "adult"
    assert verdict(dicom(patient_age="012Y")).reason == "age 012Y"
    assert verdict(dicom(patient_age="030M")).in_scope  # 2.5 years
    assert verdict(dicom(patient_age="005Y")).in_scope
    assert verdict(dicom(patient_age="008Y"), p_adult=0.9, population=ADULTS).reason == "child"
    unknown = verdict(dicom(patient_age="045Y"), population=UNKNOWN_POPULATION)
    assert unknown.in_scope and "age" not in unknown.as_fields()["scope_checks"]
