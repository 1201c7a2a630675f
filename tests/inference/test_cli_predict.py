"""``pneumoscope predict / explain / export`` end to end: CSV/JSON columns, DICOM input, streaming, bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nonxray import colour_photo
from PIL import Image
from test_sources import write_dicom
from typer.testing import CliRunner

from pneumoscope.api import load_model
from pneumoscope.cli.main import app
from pneumoscope.cli.predict import split_model_and_inputs
from pneumoscope.inference import bundled
from pneumoscope.inference.loading import load_predictor
from pneumoscope.inference.results_file import ResultWriter
from pneumoscope.inference.sources import iter_image_files, load_input
from pneumoscope.models.applicability import APPLICABILITY_ENV

COLUMNS = ["path", "label", "p_normal", "p_pneumonia", "threshold", "in_scope", "scope_reason", "scope_checks",
           "error"]
runner = CliRunner()


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def invoke(*args: str) -> object:
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def image_folder(tmp_path: Path, make_xray) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(7):
        Image.fromarray(make_xray(80, seed=i, pneumonia=i % 2 == 1)).save(folder / ("sub" if i > 3 else "") / f"x{i}.png")
    return folder


@pytest.mark.realdata
def test_predict_full_resolution_sample_and_its_dicom_copies(binary_run: Path, fullres_paths: list[Path],
                                                             tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(APPLICABILITY_ENV)  # real X-rays: the shipped check
    out = tmp_path / "results.csv"
    invoke("predict", binary_run, fullres_paths[0].parents[1], "--out", out, "--batch-size", "16")
    columns, rows = read_csv(out)
    assert columns == COLUMNS and len(rows) == 60
    for row in rows:
        assert row["error"] == "" and row["label"] in ("normal", "pneumonia")
        assert float(row["p_normal"]) + float(row["p_pneumonia"]) == pytest.approx(1.0, abs=2e-6)
        assert row["label"] == ("pneumonia" if float(row["p_pneumonia"]) >= 0.3 else "normal")
        assert row["threshold"] == "0.3" and row["in_scope"] == "True" and row["scope_reason"] == ""
        assert "image=" in row["scope_checks"] and " ok" in row["scope_checks"]

    # The same pixels as DICOM (one MONOCHROME1, one without extension) give the same probabilities: the pixels
    # predict decodes from the JPEG (which it shrinks on load; DICOMs are decoded as stored).
    dicoms = tmp_path / "dicom"
    dicoms.mkdir()
    sources = fullres_paths[:3]
    jpeg_decoder = load_predictor(binary_run)
    for i, path in enumerate(sources):
        pixels = jpeg_decoder.load(path).pixels
        name = ["a.dcm", "b_noext", "c.dcm"][i]
        if i == 2:
            write_dicom(dicoms / name, 255 - pixels, photometric="MONOCHROME1")
        else:
            write_dicom(dicoms / name, pixels)
    dicom_out = tmp_path / "dicom.jsonl"
    invoke("predict", binary_run, dicoms, "--out", dicom_out)
    dicom_rows = [json.loads(line) for line in dicom_out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in dicom_rows] == ["a.dcm", "b_noext", "c.dcm"]
    by_name = {Path(r["path"]).name: r for r in rows}
    for source, row in zip(sources, dicom_rows, strict=True):
        assert row["error"] is None
        assert row["p_pneumonia"] == pytest.approx(float(by_name[source.name]["p_pneumonia"]), abs=1e-5)


def test_corrupt_and_non_xray_files_among_many(binary_run: Path, image_folder: Path, tmp_path: Path) -> None:
    (image_folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 cut short")
    (image_folder / "sub" / "text_renamed.png").write_text("this is not a PNG")
    Image.fromarray(colour_photo(np.random.default_rng(0))).save(image_folder / "holiday.jpg")
    out = tmp_path / "results.json"
    result = invoke("predict", binary_run, image_folder, "--out", out, "--batch-size", "3", "--tta", "3")
    rows = {Path(r["path"]).name: r for r in json.loads(out.read_text())}
    assert len(rows) == 10
    assert rows["truncated.jpg"]["error"] and rows["truncated.jpg"]["label"] is None
    assert rows["text_renamed.png"]["error"] and "text_renamed.png" in rows["text_renamed.png"]["error"]
    assert rows["holiday.jpg"]["in_scope"] is False and rows["holiday.jpg"]["scope_reason"] == "not_a_chest_xray"
    assert "colour" in rows["holiday.jpg"]["scope_checks"]["image"]["detail"]
    good = [r for n, r in rows.items() if n.startswith("x")]
    assert len(good) == 7 and all(r["error"] is None and r["p_std_pneumonia"] is not None for r in good)
    assert "2 file(s) could not be read" in result.output
    assert "1 out of the model's scope" in result.output


@pytest.mark.parametrize(("case", "reason", "fix"), [
    ("truncated", "truncated or corrupt image", "re-download or re-export the file"),
    ("1x1", "too small to be a chest X-ray (1x1 px", "not a thumbnail"),
])
def test_when_the_only_file_is_unreadable_the_error_gives_its_reason_and_fix(binary_run: Path, tmp_path: Path,
                                                                             make_xray, case, reason, fix) -> None:
    from pneumoscope.errors import DataError

    image = tmp_path / "only.jpg"
    if case == "1x1":
        Image.fromarray(np.full((1, 1), 100, np.uint8)).save(image, format="JPEG")
    else:
        Image.fromarray(make_xray(256, 1)).save(image, format="JPEG")
        image.write_bytes(image.read_bytes()[:2000])
    with pytest.raises(DataError) as info:
        runner.invoke(app, ["predict", str(binary_run), str(image), "--out", str(tmp_path / "p.csv")],
                      catch_exceptions=False)
    message = str(info.value)
    assert str(image) in message and reason in message and "Fix:" in message and fix in message
    assert "see the error column" not in message


def test_when_no_file_is_readable_the_error_shows_the_first_reason(binary_run: Path, tmp_path: Path) -> None:
    from pneumoscope.errors import DataError

    for name in ("a.png", "b.png"):
        (tmp_path / name).write_text("not an image")
    with pytest.raises(DataError, match="none of the 2 files could be read") as info:
        runner.invoke(app, ["predict", str(binary_run), str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                            "--out", str(tmp_path / "p.csv")], catch_exceptions=False)
    assert "a.png: not an image" in str(info.value) and "Fix:" in str(info.value)


def test_results_are_streamed_batch_by_batch(binary_run: Path, image_folder: Path, tmp_path: Path) -> None:
    model = load_model(binary_run)
    consumed: list[Path] = []

    def lazy_paths():
        for path in iter_image_files([image_folder]):
            consumed.append(path)
            yield path

    out = tmp_path / "stream.csv"
    writer = ResultWriter(out, model.prediction_columns())
    rows = model.iter_predictions(lazy_paths(), batch_size=2, workers=1)
    for _ in range(2):
        writer.write(next(rows))
    writer.flush()
    # After the first batch only that batch and the one being decoded ahead have been read.
    assert len(consumed) == 4
    assert len(read_csv(out)[1]) == 2
    for row in rows:
        writer.write(row)
    writer.close()
    assert len(consumed) == 7 and len(read_csv(out)[1]) == 7


def test_first_argument_is_a_model_only_if_it_names_one(binary_run: Path, image_folder: Path, tmp_path: Path,
                                                        monkeypatch) -> None:
    monkeypatch.setenv(bundled.BUNDLED_DIR_ENV, str(tmp_path / "bundled"))
    monkeypatch.setenv(bundled.DEFAULT_MODEL_ENV, "house-model")
    assert split_model_and_inputs([str(binary_run), "a.png"]) == (str(binary_run), ["a.png"])
    assert split_model_and_inputs([str(image_folder)]) == ("house-model", [str(image_folder)])
    assert split_model_and_inputs(["x.png", "y.png"]) == ("house-model", ["x.png", "y.png"])
    assert split_model_and_inputs(["kermany-binry", "y.png"])[0] == "kermany-binry"  # a typo → "no such model"

    shutil.copytree(binary_run, tmp_path / "bundled" / "house-model")
    out = tmp_path / "default.csv"
    invoke("predict", image_folder / "x0.png", "--out", out)
    assert read_csv(out)[1][0]["label"] in ("normal", "pneumonia")


def test_explain_and_export_commands(binary_run: Path, image_folder: Path, tmp_path: Path, make_xray) -> None:
    run = shutil.copytree(binary_run, tmp_path / "run")
    invoke("explain", run, image_folder / "x1.png", "--method", "gradcam++", "--class", "pneumonia",
           "--out", tmp_path / "cams")
    assert (tmp_path / "cams" / "x1_gradcampp_pneumonia_overlay.png").is_file()
    summary = json.loads((tmp_path / "cams" / "explanations.json").read_text())
    assert summary[0]["target_class"] == "pneumonia"

    invoke("export", run, "--format", "onnx", "--out", tmp_path / "model.onnx")
    assert load_predictor(tmp_path / "model.onnx").applicability is not None
    out = tmp_path / "onnx.csv"
    invoke("predict", tmp_path / "model.onnx", image_folder, "--out", out)
    torch_out = tmp_path / "torch.csv"
    invoke("predict", run, image_folder, "--out", torch_out)
    onnx_rows, torch_rows = read_csv(out)[1], read_csv(torch_out)[1]
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    assert max(abs(float(a["p_pneumonia"]) - float(b["p_pneumonia"])) for a, b in zip(onnx_rows, torch_rows,
                                                                                       strict=True)) <= 1e-4


def test_user_errors_are_one_line_with_exit_status_2(tmp_path: Path, image_folder: Path) -> None:
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"\x08\x07")
    # No default model, whether or not the package ships one.
    env = {**os.environ, bundled.BUNDLED_DIR_ENV: str(tmp_path / "none"), bundled.DEFAULT_MODEL_ENV: "no-such-default"}
    cases = [
        (["predict", str(foreign), str(image_folder)], "foreign.onnx"),
        (["predict", "no-such-model", str(image_folder)], "no bundled model named 'no-such-model'"),
        (["predict", str(image_folder), "--out", str(tmp_path / "r.xlsx")], "no bundled model"),
        (["predict", str(tmp_path / "missing.png")], "no bundled model"),
    ]
    for args, expected in cases:
        done = subprocess.run([sys.executable, "-c", "from pneumoscope.cli.main import main; main()", *args],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_unsupported_results_format_is_refused(binary_run: Path, image_folder: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", str(binary_run), str(image_folder), "--out", str(tmp_path / "r.xlsx")])
    assert result.exit_code != 0 and "unsupported results format" in str(result.exception)
    assert load_input(image_folder / "x0.png").gray.shape == (80, 80)
