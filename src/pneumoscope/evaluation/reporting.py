"""The report of a run folder, as ``pneumoscope report`` builds it: the latest evaluation (or a named one; a run
never evaluated is first scored on its own validation split), the model figures it asks for drawn where the
evaluation folder lacks them, then the page (``report.build``, which reads only files)."""

from __future__ import annotations

from pathlib import Path

from pneumoscope.errors import DataError
from pneumoscope.evaluation.evaluate import evaluate
from pneumoscope.evaluation.figures import write_model_figures
from pneumoscope.inference.runs import load_run
from pneumoscope.report.build import write_evaluation_report
from pneumoscope.results import METRICS_JSON, REPORT_HTML, eval_folders, read_figure_notes, read_run_record


def write_run_report(run_dir: str | Path, out: str | Path | None = None, eval_name: str | None = None,
                     filters: bool = False, gradcam: bool = True, progress: bool = True) -> Path:
    """``RUN_DIR/report.html`` (or ``out``) from the run's latest evaluation (or ``eval_name``)."""
    record = read_run_record(run_dir)
    eval_dir = _evaluation_folder(record.run_dir, eval_name, progress)
    drawn = read_figure_notes(eval_dir)
    missing = {"gradcam": gradcam and "gradcam" not in drawn, "filters": filters and "filters" not in drawn}
    if any(missing.values()):
        write_model_figures(load_run(record.run_dir), eval_dir, **missing)
    return write_evaluation_report(record, eval_dir, out or record.run_dir / REPORT_HTML, filters=filters,
                                   gradcam=gradcam)


def _evaluation_folder(run_dir: Path, eval_name: str | None, progress: bool) -> Path:
    if eval_name is None:
        folders = eval_folders(run_dir)
        return folders[-1] if folders else evaluate(run_dir, split="val", proxies=False, report=False,
                                                    progress=progress)
    eval_dir = run_dir / eval_name
    if not (eval_dir / METRICS_JSON).is_file():
        known = ", ".join(p.name for p in eval_folders(run_dir)) or "none"
        raise DataError(f"no evaluation {eval_name!r} in this run folder (found: {known}).", path=run_dir,
                        fix="pass one of those names to --eval, or run `pneumoscope evaluate` first.")
    return eval_dir
