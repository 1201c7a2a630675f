"""ONNX export: dynamic batch, metadata inside, onnx.checker, parity with PyTorch through onnxruntime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pneumoscope.data.populations import SOURCE_POPULATIONS
from pneumoscope.errors import ConfigError, ModelError
from pneumoscope.inference.export import export_onnx
from pneumoscope.inference.loading import load_predictor
from pneumoscope.inference.sources import load_input


@pytest.fixture(scope="module")
def exported(binary_run: Path, tmp_path_factory) -> Path:
    run = shutil.copytree(binary_run, tmp_path_factory.mktemp("export") / "run")
    meta = json.loads((run / "model.json").read_text())
    meta["population"] = SOURCE_POPULATIONS["kermany"].as_dict()
    (run / "model.json").write_text(json.dumps(meta))
    result = export_onnx(run, run / "model.onnx")
    assert result.max_abs_prob_diff <= 1e-4 and result.outputs == ("logits", "features")
    return result.path


def test_onnx_file_passes_the_checker_and_carries_the_metadata(exported: Path) -> None:
    import onnx

    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props["pneumoscope"])
    assert meta["classes"] == ["normal", "pneumonia"] and meta["threshold"] == 0.3
    assert meta["temperature"] == 1.5 and meta["image_size"] == 64 and meta["preprocessing"] == {"clahe": False}
    assert json.loads(props["classes"]) == ["normal", "pneumonia"]
    assert meta["population"]["name"] == "pediatric"  # the scope verdict of the ONNX file checks the population
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"


def test_onnx_predictor_reads_metadata_and_takes_any_batch(exported: Path, make_xray) -> None:
    predictor = load_predictor(exported)
    assert predictor.backend == "onnx" and predictor.classes == ("normal", "pneumonia")
    assert predictor.threshold == 0.3 and predictor.temperature == 1.5 and predictor.applicability is not None
    assert predictor.population.name == "pediatric" and predictor.card["scope"]["population_check"] is True
    for n in (1, 3, 7):
        results = predictor.predict_arrays([make_xray(70, seed=i) for i in range(n)], tta=2 if n == 3 else 0)
        assert len(results) == n and all(sum(r["probabilities"].values()) == pytest.approx(1.0) for r in results)


@pytest.mark.realdata
def test_onnx_matches_pytorch_on_real_images(exported: Path, fullres_paths: list[Path]) -> None:
    images = [load_input(p).gray for p in fullres_paths[::5]]
    torch_results = load_predictor(exported.parent, backend="pytorch").predict_arrays(images)
    onnx_results = load_predictor(exported).predict_arrays(images)
    difference = max(
        abs(a["probabilities"][c] - b["probabilities"][c])
        for a, b in zip(torch_results, onnx_results, strict=True) for c in a["probabilities"]
    )
    assert difference <= 1e-4
    assert [a["label"] for a in torch_results] == [b["label"] for b in onnx_results]
    assert [a["in_scope"] for a in torch_results] == [b["in_scope"] for b in onnx_results]
    assert [a["scope_checks"]["population"]["value"] for a in torch_results] == pytest.approx(
        [b["scope_checks"]["population"]["value"] for b in onnx_results], abs=1e-3)


def test_explaining_an_onnx_model_is_a_clear_error(exported: Path, make_xray) -> None:
    with pytest.raises(ModelError, match="need the PyTorch model"):
        load_predictor(exported).explain_array(make_xray(64, 1))


def test_exporting_an_onnx_file_again_is_refused(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already an ONNX file"):
        export_onnx(exported, tmp_path / "again.onnx")


def test_model_folder_predicts_through_its_exported_onnx_on_cpu(exported: Path, make_xray) -> None:
    auto = load_predictor(exported.parent)
    forced = load_predictor(exported.parent, backend="pytorch")
    assert auto.backend == "onnx" and forced.backend == "pytorch" and auto.model_id == forced.model_id
    image = make_xray(90, seed=5)
    assert auto.predict_arrays([image])[0]["probabilities"] == pytest.approx(
        forced.predict_arrays([image])[0]["probabilities"], abs=1e-4)
    assert auto.explain_array(image)["heatmap"].shape == (90, 90)  # the PyTorch model stays loaded for Grad-CAM


def test_onnx_exported_from_other_weights_is_not_used(exported: Path, binary_run: Path, tmp_path: Path) -> None:
    from inference_helpers import save_run, small_architecture

    other = save_run(tmp_path / "other", small_architecture(), seed=1)
    shutil.copy(exported, other / "model.onnx")
    assert load_predictor(other).backend == "pytorch"
    with pytest.raises(ModelError, match="exported from other weights"):
        load_predictor(other, backend="onnx")
    with pytest.raises(ModelError, match="no model.onnx beside the model"):
        load_predictor(binary_run, backend="onnx")


def test_a_folder_with_its_export_predicts_without_importing_torch(exported: Path, make_xray, tmp_path: Path) -> None:
    import subprocess
    import sys

    from PIL import Image

    image = tmp_path / "xray.png"
    Image.fromarray(make_xray(90, seed=6)).save(image)
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from pneumoscope.inference.loading import load_predictor\n"
        f"predictor = load_predictor({str(exported.parent)!r})\n"
        f"row = next(predictor.predict_files([{str(image)!r}]))\n"
        "print(predictor.backend, row['label'] in predictor.classes, 'torch' in sys.modules)\n"
        "predictor.explain_array(np.full((90, 90), 0.5, dtype=np.float32))\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["onnx", "True", "False", "True"]  # torch only once an explanation needs it
