"""Predictor: loading every kind of model reference, probabilities, threshold, temperature, TTA, scope, errors."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from inference_helpers import IMAGE_SIZE, save_run, small_architecture
from nonxray import NON_XRAYS

from pneumoscope.errors import DataError, ModelError
from pneumoscope.inference import bundled
from pneumoscope.inference.loading import load_predictor
from pneumoscope.inference.predictor import Predictor
from pneumoscope.models.applicability import APPLICABILITY_ENV


@pytest.fixture(scope="module")
def predictor(binary_run: Path) -> Predictor:
    return load_predictor(binary_run)


@pytest.fixture(scope="module")
def xrays(make_xray) -> list[np.ndarray]:
    return [make_xray(96 + 16 * i, seed=i, pneumonia=i % 2 == 1) for i in range(5)]


def expected_probabilities(run: Path, predictor: Predictor, image: np.ndarray) -> np.ndarray:
    """softmax(logits / T) computed directly with the PyTorch model on the training preprocess."""
    import torch

    from pneumoscope.data.preprocess import preprocess
    from pneumoscope.models import load_classifier

    model, meta = load_classifier(run)
    gray = image.astype(np.float32) / 255
    x = torch.from_numpy(preprocess(gray, meta["image_size"]).astype(np.float32)[None, None] / 255)
    with torch.no_grad():
        logits = model.eval()(x).double()
    return torch.softmax(logits / meta["temperature"], dim=1)[0].numpy()


def test_loads_a_run_folder_with_its_metadata(predictor: Predictor, binary_run: Path) -> None:
    assert predictor.classes == ("normal", "pneumonia")
    assert predictor.threshold == 0.3 and predictor.temperature == 1.5
    assert predictor.image_size == IMAGE_SIZE and predictor.task == "binary"
    assert predictor.backend == "pytorch"
    assert predictor.model_id.startswith(small_architecture()) and len(predictor.model_id.split("-")[-1]) == 12
    card = predictor.card
    assert card["classes"] == ["normal", "pneumonia"] and card["threshold"] == 0.3
    assert card["val_metrics"] == {"accuracy": 0.5} and card["scope"]["chest_xray_check"] is True
    assert card["scope"]["population_check"] is False and card["scope"]["population"]["name"] == "unknown"
    assert "population not checked" in card["scope"]["note"]
    assert load_predictor(binary_run / "model.safetensors").model_id == predictor.model_id


def test_probabilities_use_temperature_and_threshold(predictor: Predictor, binary_run: Path, xrays) -> None:
    results = predictor.predict_arrays(xrays)
    assert len(results) == len(xrays)
    for image, result in zip(xrays, results, strict=True):
        probabilities = np.array([result["probabilities"][c] for c in predictor.classes])
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(probabilities, expected_probabilities(binary_run, predictor, image), atol=1e-5)
        assert result["label"] == ("pneumonia" if probabilities[1] >= 0.3 else "normal")
        assert result["threshold"] == 0.3 and "p_std" not in result
        assert isinstance(result["in_scope"], bool) and set(result["scope_checks"]) >= {"image"}


def test_batched_and_single_predictions_agree(predictor: Predictor, xrays) -> None:
    batched = predictor.predict_arrays(xrays)
    single = [predictor.predict_arrays([x])[0] for x in xrays]
    for a, b in zip(batched, single, strict=True):
        assert a["probabilities"]["pneumonia"] == pytest.approx(b["probabilities"]["pneumonia"], abs=1e-5)


def test_accepts_uint8_float_and_rgb_arrays(predictor: Predictor, make_xray) -> None:
    u8 = make_xray(80, 4)
    as_float = predictor.predict_arrays([u8.astype(np.float32) / 255])[0]
    as_rgb = predictor.predict_arrays([np.repeat(u8[..., None], 3, axis=-1)])[0]
    as_u8 = predictor.predict_arrays([u8])[0]
    assert as_float["probabilities"] == pytest.approx(as_u8["probabilities"], abs=1e-6)
    assert as_rgb["probabilities"] == pytest.approx(as_u8["probabilities"], abs=1e-3)
    with pytest.raises(DataError):
        predictor.predict_arrays([np.full((8, 8), 2.0, np.float32)])
    with pytest.raises(DataError):
        predictor.predict_arrays([np.zeros((4, 8, 8, 3), np.uint8)])


def test_tta_gives_mean_and_spread(predictor: Predictor, xrays) -> None:
    plain = predictor.predict_arrays(xrays[:2])
    one = predictor.predict_arrays(xrays[:2], tta=1)
    many = predictor.predict_arrays(xrays[:2], tta=6)
    for p, o, m in zip(plain, one, many, strict=True):
        assert o["probabilities"] == pytest.approx(p["probabilities"], abs=1e-6)
        assert all(v == pytest.approx(0.0, abs=1e-7) for v in o["p_std"].values())
        assert set(m["p_std"]) == set(predictor.classes) and all(v >= 0 for v in m["p_std"].values())
        assert sum(m["probabilities"].values()) == pytest.approx(1.0)


def test_non_xray_inputs_are_flagged(predictor: Predictor) -> None:
    rng = np.random.default_rng(3)
    results = predictor.predict_arrays([make(rng) for make in NON_XRAYS.values()])
    assert all(not r["in_scope"] and r["scope_reason"] == "not_a_chest_xray" and r["scope_detail"]
               for r in results)


def test_synthetic_xrays_pass_the_check_and_the_population_is_not_checked_without_one(predictor: Predictor,
                                                                                     xrays) -> None:
    for result in predictor.predict_arrays(xrays):
        assert result["scope_checks"]["chest_xray"]["ok"], result["scope_checks"]
        assert result["scope_checks"]["population"]["detail"].startswith("not checked")
    blank = predictor.predict_arrays([np.full((64, 64), 0.5, np.float32)])[0]
    assert blank["scope_checks"]["chest_xray"]["value"] > 1.0  # unlike any X-ray the check knows


def test_the_models_population_decides_the_population_check(binary_run: Path, tmp_path: Path, make_xray) -> None:
    from pneumoscope.data.populations import SOURCE_POPULATIONS

    children = shutil.copytree(binary_run, tmp_path / "children")
    meta = json.loads((children / "model.json").read_text())
    meta["population"] = SOURCE_POPULATIONS["kermany"].as_dict()
    (children / "model.json").write_text(json.dumps(meta))
    adults = shutil.copytree(binary_run, tmp_path / "adults")
    meta["population"] = SOURCE_POPULATIONS["covid_radiography"].as_dict()
    (adults / "model.json").write_text(json.dumps(meta))
    child, inverted = make_xray(64, seed=11), 255 - make_xray(64, seed=12)  # the tiny check's "adults" are inverted
    on_children = load_predictor(children).predict_arrays([child, inverted])
    assert on_children[0]["in_scope"] and on_children[1]["scope_reason"] == "adult"
    on_adults = load_predictor(adults).predict_arrays([child, inverted])
    assert on_adults[0]["scope_reason"] == "child" and on_adults[1]["in_scope"]
    assert load_predictor(children).card["scope"]["population"]["name"] == "pediatric"


def test_population_of_older_runs_comes_from_their_manifest(binary_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(binary_run, tmp_path / "run")
    (run / "manifest.csv").write_text("path,split,source\na.png,train,kermany\nb.png,val,kermany\n")
    assert load_predictor(run).population.name == "pediatric"


def test_without_an_applicability_check_only_header_and_image_are_checked(binary_run: Path, monkeypatch,
                                                                          make_xray) -> None:
    monkeypatch.delenv(APPLICABILITY_ENV)
    predictor = load_predictor(binary_run, applicability=None)
    result = predictor.predict_arrays([make_xray(64, seed=3)])[0]
    assert set(result["scope_checks"]) == {"image", "population"} and result["in_scope"]
    assert predictor.card["scope"]["chest_xray_check"] is False and "no applicability check" in predictor.card[
        "scope"]["note"]


def test_concurrent_calls_give_the_same_results(predictor: Predictor, make_xray) -> None:
    images = [make_xray(64 + 8 * (i % 4), seed=i) for i in range(12)]
    expected = [r["scope_checks"]["chest_xray"]["value"] for r in predictor.predict_arrays(images)]
    got: dict[int, list[float]] = {}

    def worker(k: int) -> None:
        got[k] = [r["scope_checks"]["chest_xray"]["value"] for _ in range(3)
                  for r in predictor.predict_arrays(images)][-len(images):]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(got[k] == pytest.approx(expected, abs=1e-6) for k in got)


@pytest.mark.realdata
def test_predict_files_on_full_resolution_images(predictor: Predictor, fullres_paths: list[Path]) -> None:
    paths = fullres_paths[::6]
    rows = list(predictor.predict_files(paths, batch_size=4, workers=2))
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    for row in rows:
        assert row["error"] == "" and sum(row["probabilities"].values()) == pytest.approx(1.0)
        assert row["scope_checks"]["image"]["ok"], row
    direct = predictor.predict_arrays([predictor.load(paths[0]).gray])[0]  # the file decoded as predict decodes it
    assert rows[0]["probabilities"] == pytest.approx(direct["probabilities"], abs=1e-6)


def test_a_large_jpeg_is_shrunk_on_load_into_the_input_the_training_cache_makes(predictor: Predictor, tmp_path: Path,
                                                                                make_xray) -> None:
    import hashlib

    from PIL import Image

    from pneumoscope.data.cache import decode_for_cache

    path = tmp_path / "big.jpeg"
    Image.fromarray(make_xray(256, seed=4)).resize((1600, 1200)).save(path, quality=95)
    loaded = predictor.load(path)
    assert loaded.source_size == (1600, 1200) and loaded.pixels.shape[0] < 1200  # decoded at reduced scale
    assert min(loaded.pixels.shape) >= 2 * predictor.decode_side
    cached = decode_for_cache((str(path), hashlib.sha256(path.read_bytes()).hexdigest(), predictor.image_size,
                               bool(predictor.info.clahe)))
    np.testing.assert_allclose(predictor.ready(loaded).prepared, cached / 255.0, atol=1e-6)
    row = next(predictor.predict_files([path]))
    assert row["probabilities"] == pytest.approx(predictor.predict_arrays([loaded])[0]["probabilities"], abs=1e-6)


def test_corrupt_file_becomes_an_error_row(predictor: Predictor, tmp_path: Path, make_xray) -> None:
    from PIL import Image

    good = []
    for i in range(5):
        good.append(tmp_path / f"ok{i}.png")
        Image.fromarray(make_xray(64, i)).save(good[-1])
    broken = tmp_path / "broken.jpeg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    paths = [*good[:2], broken, *good[2:]]
    rows = list(predictor.predict_files(paths, batch_size=2))
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    assert rows[2]["error"] and "broken.jpeg" in rows[2]["error"] and "label" not in rows[2]
    assert all(r["error"] == "" and "label" in r for i, r in enumerate(rows) if i != 2)


# ---------------------------------------------------------------------------------------------------- errors


def test_folder_without_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no trained model here"):
        load_predictor(tmp_path)


def test_run_folder_of_another_task_is_refused(binary_run: Path) -> None:
    with pytest.raises(ModelError, match="trained for task 'binary', not '3class'"):
        load_predictor(binary_run, task="3class")


def test_metadata_that_does_not_match_the_weights_is_refused(binary_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(binary_run, tmp_path / "run")
    meta = json.loads((run / "model.json").read_text())
    meta.update(task="3class", classes=["normal", "bacteria", "virus"])
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError):
        load_predictor(run)


def test_metadata_with_wrong_classes_for_its_task_is_refused(binary_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(binary_run, tmp_path / "run")
    meta = json.loads((run / "model.json").read_text())
    meta["classes"] = ["healthy", "sick"]
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="do not match task"):
        load_predictor(run)


def test_onnx_without_pneumoscope_metadata_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ModelError, match="no pneumoscope metadata"):
        load_predictor(path)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        load_predictor(garbage)


def test_unknown_reference_lists_the_bundled_models(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(bundled.BUNDLED_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelError, match="no bundled model named 'nonexistent-model'"):
        load_predictor("nonexistent-model")
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match="not a model file"):
        load_predictor(other)


# ---------------------------------------------------------------------------------------------------- bundled


def test_bundled_model_is_found_by_name_and_as_default(binary_run: Path, tmp_path: Path, monkeypatch) -> None:
    shutil.copytree(binary_run, tmp_path / "bundled" / "test-binary")
    (tmp_path / "bundled" / "test-binary" / "MODEL_CARD.md").write_text("# Test model\nNot a medical device.")
    (tmp_path / "bundled" / "incomplete").mkdir()
    monkeypatch.setenv(bundled.BUNDLED_DIR_ENV, str(tmp_path / "bundled"))
    monkeypatch.setenv(bundled.DEFAULT_MODEL_ENV, "test-binary")
    assert [m.name for m in bundled.list_bundled() if m.path.parent == tmp_path / "bundled"] == ["test-binary"]
    predictor = load_predictor("test-binary")
    assert predictor.model_id.startswith("test-binary-")
    assert predictor.card["name"] == "test-binary" and "Not a medical device" in predictor.card["model_card"]
    assert bundled.get_bundled().path == tmp_path / "bundled" / "test-binary"
    assert not bundled.is_bundled_name("incomplete") and not bundled.is_bundled_name("../test-binary")


def test_one_logit_sigmoid_binary_model(tmp_path: Path, make_xray) -> None:
    import torch

    from pneumoscope.inference.export import export_onnx
    from pneumoscope.models import load_classifier

    run = save_run(tmp_path / "sigmoid", small_architecture(), outputs=1, temperature=2.0, threshold=0.4)
    predictor = load_predictor(run)
    image = make_xray(72, seed=9, pneumonia=True)
    result = predictor.predict_arrays([image], tta=2)[0]
    model, _ = load_classifier(run)
    x = torch.from_numpy(predictor.prepare(image.astype(np.float32) / 255)[None, None])
    with torch.no_grad():
        logit = float(model.eval()(x)[0, 0])
    p = 1 / (1 + np.exp(-logit / 2.0))
    plain = predictor.predict_arrays([image])[0]
    assert plain["probabilities"]["pneumonia"] == pytest.approx(p, abs=1e-5)
    assert plain["label"] == ("pneumonia" if p >= 0.4 else "normal")
    assert sum(result["probabilities"].values()) == pytest.approx(1.0) and set(result["p_std"]) == {"normal", "pneumonia"}
    for target in ("normal", "pneumonia"):
        assert predictor.explain_array(image, target_class=target)["heatmap"].shape == (72, 72)
    exported = export_onnx(run, tmp_path / "sigmoid.onnx")
    assert exported.max_abs_prob_diff <= 1e-4
    assert load_predictor(exported.path).predict_arrays([image])[0]["probabilities"]["pneumonia"] == pytest.approx(
        p, abs=1e-4)
