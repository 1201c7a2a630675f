"""docs/tutorial.ipynb runs end to end at its tiny size on the real data (ingest, split, train, evaluate with the
proxies, Grad-CAM, ONNX export), and is stored without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "tutorial.ipynb"


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the tutorial has no code"
    assert all(not cell.outputs and cell.execution_count is None for cell in code), (
        "strip the outputs before committing: jupyter nbconvert --clear-output --inplace docs/tutorial.ipynb")


@pytest.mark.realdata
@pytest.mark.slow
def test_the_tutorial_runs_end_to_end_at_tiny_size(real_data: Path, tmp_path: Path, monkeypatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("PNEUMOSCOPE_DATA", str(real_data.resolve()))
    monkeypatch.setenv("PNEUMOSCOPE_TUTORIAL_SIZE", "tiny")
    monkeypatch.setenv("PNEUMOSCOPE_TUTORIAL_OUT", str(tmp_path / "tutorial"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    run = tmp_path / "tutorial" / "model"
    assert (run / "summary.json").is_file() and (run / "model.onnx").is_file()
    assert (run / "eval-val" / "report.html").is_file() and (run / "eval-val" / "unseen_site_normals.csv").is_file()
    assert sorted(p.name.rsplit("_", 1)[-1] for p in (tmp_path / "tutorial" / "cams").iterdir()) == [
        "heatmap.png", "overlay.png"]
    summary = next(cell for cell in notebook.cells if "result.summary()" in cell.source)
    shown = next(out for out in summary.outputs if out["output_type"] == "execute_result")["data"]["text/plain"]
    assert "unseen-site normals specificity" in shown and "accuracy" in shown
