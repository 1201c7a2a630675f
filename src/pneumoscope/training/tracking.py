"""Experiment tracking through Lightning's loggers: TensorBoard and MLflow, beside the run folder's own metrics.csv.

``tracking.loggers`` in the config names them: ``csv`` is the run folder's metrics.csv (always written),
``tensorboard`` writes event files into ``RUN_DIR/tensorboard/``, ``mlflow`` logs to ``tracking.mlflow_uri`` (a local
folder such as ``mlruns``, i.e. MLflow's file store, or any tracking URI: ``sqlite:///mlflow.db``,
``http://host:5000``). Logged: the resolved config (parameters and ``config.yaml``), each epoch's row of metrics.csv
(step = epoch), the pneumoscope version and git commits, and, after training, the selected model's validation
figures and the run's result files.

``RUN_DIR/tracking.json`` records where the run went (MLflow tracking URI, experiment and run id; the TensorBoard
folder), so that a resumed run, and ``open_tracked_run`` (``pneumoscope evaluate / compare --log-to RUN_DIR``), log
to the same run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pneumoscope.errors import ConfigError
from pneumoscope.files import atomic_write_text
from pneumoscope.training.config import TrackingConfig, TrainConfig, config_to_yaml
from pneumoscope.version import __version__

TRACKING_FILE = "tracking.json"
TENSORBOARD_DIR = "tensorboard"
EXTERNAL_LOGGERS = ("tensorboard", "mlflow")
MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"
# MLflow 3 refuses its file store unless this is set; a local mlruns folder is what tracking.mlflow_uri means by default
MLFLOW_FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"
RESULT_FILES = ("config.yaml", "summary.json", "model.json", "metrics.csv", "curves.png")
_TEXT_SUFFIXES = (".md", ".yaml", ".json", ".txt")  # TensorBoard text; tables (CSV) only as MLflow artefacts


def is_tracked(config: TrainConfig) -> bool:
    """True when the config asks for TensorBoard or MLflow."""
    return any(name in EXTERNAL_LOGGERS for name in config.tracking.loggers)


def mlflow_uri(tracking: TrackingConfig) -> str:
    """The MLflow tracking URI: the config's, else ``$MLFLOW_TRACKING_URI``, else ``./mlruns``; a local folder becomes
    an absolute ``file:`` URI (the same store whatever the working directory of a later ``--log-to``)."""
    uri = tracking.mlflow_uri or os.environ.get(MLFLOW_URI_ENV) or "mlruns"
    if "://" in uri or uri.startswith(("file:", "databricks")):
        return uri
    return Path(uri).expanduser().resolve().as_uri()


def experiment_loggers(config: TrainConfig, run_dir: Path, resuming: bool) -> list[Any]:
    """The Lightning loggers of ``config.tracking`` for ``run_dir`` (an empty list for metrics.csv only).

    A resumed run logs to the MLflow run recorded in its tracking.json. On rank zero, tracking.json is written and
    the config, version and git commits are logged.
    """
    if not is_tracked(config):
        return []
    saved = read_tracking(run_dir) if resuming else {}
    tags = run_tags(run_dir)
    loggers: list[Any] = []
    record: dict[str, Any] = {}
    if "tensorboard" in config.tracking.loggers:
        loggers.append(_tensorboard_logger(run_dir))
        record["tensorboard"] = TENSORBOARD_DIR
    if "mlflow" in config.tracking.loggers:
        previous = saved.get("mlflow") or {}
        uri = previous.get("tracking_uri") or mlflow_uri(config.tracking)
        logger = _mlflow_logger(uri, config.tracking.experiment, config.tracking.run_name or run_dir.resolve().name,
                                previous.get("run_id"), tags)
        loggers.append(logger)
        if _is_global_zero():
            record["mlflow"] = {"tracking_uri": uri, "experiment": config.tracking.experiment,
                                "experiment_id": logger.experiment_id, "run_id": logger.run_id}
    if _is_global_zero():
        atomic_write_text(run_dir / TRACKING_FILE, json.dumps(record, indent=2) + "\n")
        if not resuming:
            log_config(loggers, config, tags)
    return loggers


def log_config(loggers: list[Any], config: TrainConfig, tags: Mapping[str, str]) -> None:
    """The resolved config as parameters (``section/key``) and as ``config.yaml``; TensorBoard also gets the version and
    git commits (``tags``) as text, MLflow has them as run tags."""
    for logger in loggers:
        logger.log_hyperparams(config.to_dict())
    run = TrackedRun(loggers)
    run.log_text("config.yaml", config_to_yaml(config))
    run.log_text("tags.txt", "\n".join(f"{key}: {value}" for key, value in tags.items()), backends=("tensorboard",))


def log_epoch(loggers: list[Any], row: Mapping[str, Any]) -> None:
    """One row of metrics.csv, at step = its epoch number."""
    figures = {key: float(value) for key, value in row.items() if key != "epoch" and is_number(value)}
    for logger in loggers:
        logger.log_metrics(figures, step=int(row["epoch"]))


def log_training_result(run_dir: Path, summary: Mapping[str, Any]) -> None:
    """After training: the selected model's validation figures (``selected/...``) and the run's result files."""
    figures = {f"selected/{key}": value for key, value in summary.get("val_metrics", {}).items()
               if key != "n" and is_number(value)}
    for cls, value in (summary.get("val_metrics", {}).get("recall_per_class") or {}).items():
        figures[f"selected/recall_{cls}"] = value
    for key in ("threshold", "temperature", "best_epoch", "wall_seconds", "train_seconds"):
        if is_number(summary.get(key)):
            figures[f"selected/{key}"] = summary[key]
    with open_tracked_run(run_dir) as run:
        run.log_metrics(figures)
        for name in RESULT_FILES:
            if (run_dir / name).is_file():
                run.log_file(run_dir / name)


class TrackedRun:
    """A tracked run reopened for logging after the fact: metrics, text and files, to each of its backends.

    TensorBoard has no files: Markdown, YAML, JSON and text files are logged as text there, others (CSV tables,
    HTML, PNG) only to MLflow.
    """

    def __init__(self, loggers: list[Any]):
        self.loggers = loggers

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numbers only (None and non-finite values are left out)."""
        figures = {key: float(value) for key, value in metrics.items() if is_number(value)}
        for logger in self.loggers:
            logger.log_metrics(figures, step=step if step is not None else 0)

    def log_text(self, name: str, text: str, backends: tuple[str, ...] = ("tensorboard", "mlflow")) -> None:
        """``text`` as the MLflow artefact ``name`` / TensorBoard text ``name``."""
        for logger in self.loggers:
            if _is_tensorboard(logger) and "tensorboard" in backends:
                logger.experiment.add_text(name, _as_markdown(name, text), 0)
            elif not _is_tensorboard(logger) and "mlflow" in backends:
                logger.experiment.log_text(logger.run_id, text, name)

    def log_file(self, path: Path, folder: str | None = None) -> None:
        """``path`` as an MLflow artefact (under ``folder``); a text file also as TensorBoard text."""
        for logger in self.loggers:
            if _is_tensorboard(logger):
                if path.suffix in _TEXT_SUFFIXES:
                    name = f"{folder}/{path.name}" if folder else path.name
                    logger.experiment.add_text(name, _as_markdown(path.name, path.read_text(encoding="utf-8")), 0)
            else:
                logger.experiment.log_artifact(logger.run_id, str(path), folder)

    def close(self) -> None:
        for logger in self.loggers:
            logger.finalize("success")


def read_tracking(run_dir: str | Path) -> dict[str, Any]:
    """The run's tracking.json (empty when the run was not tracked)."""
    path = Path(run_dir) / TRACKING_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ConfigError("tracking.json is not valid JSON.", path=path,
                          fix="restore it, or delete it and log to a new run.") from None


def require_tracked(run_dir: str | Path) -> dict[str, Any]:
    """The tracking.json of a tracked run folder; a ConfigError for a folder that is not tracked."""
    record = read_tracking(run_dir)
    if not record.get("tensorboard") and not record.get("mlflow"):
        raise ConfigError("this run is not tracked (no tracking.json naming an MLflow run or a TensorBoard log).",
                          path=Path(run_dir), fix="train it with --set tracking.loggers=[csv,mlflow] (or "
                                                  "tensorboard), or drop --log-to.")
    return record


@contextmanager
def open_tracked_run(run_dir: str | Path) -> Iterator[TrackedRun]:
    """Reopen the MLflow run / TensorBoard log of a tracked run folder (a ConfigError for an untracked one)."""
    run_dir = Path(run_dir)
    record = require_tracked(run_dir)
    loggers: list[Any] = []
    if record.get("tensorboard"):
        loggers.append(_tensorboard_logger(run_dir))
    if record.get("mlflow"):
        saved = record["mlflow"]
        loggers.append(_mlflow_logger(saved["tracking_uri"], saved.get("experiment"), None, saved["run_id"], {}))
    run = TrackedRun(loggers)
    try:
        yield run
    finally:
        run.close()


def run_tags(run_dir: Path) -> dict[str, str]:
    """The pneumoscope version, and the git commits of the working directory and of the pneumoscope code where they
    are git checkouts (``-dirty`` when they hold uncommitted changes)."""
    tags = {"pneumoscope.version": __version__, "pneumoscope.run_dir": str(run_dir.resolve())}
    for name, folder in (("mlflow.source.git.commit", Path.cwd()), ("pneumoscope.git_commit", Path(__file__).parent)):
        commit = git_commit(folder)
        if commit:
            tags[name] = commit
    return tags


def git_commit(folder: Path) -> str | None:
    """``HEAD`` of the git checkout holding ``folder`` (``<sha>-dirty`` with uncommitted changes); None elsewhere."""
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=20, check=False)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine, or a very slow file system
        return None
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def _require(module: str, logger: str) -> None:
    """A ConfigError naming the extra to install when a tracking library is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"tracking.loggers names {logger}, but the {module} package is not installed.",
                          fix="pip install 'pneumoscope[tracking]', or drop it from tracking.loggers.")


def _tensorboard_logger(run_dir: Path) -> Any:
    _require("tensorboard", "tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=str(run_dir), name=TENSORBOARD_DIR, version="", default_hp_metric=False)


def _mlflow_logger(uri: str, experiment: str | None, run_name: str | None, run_id: str | None,
                   tags: dict[str, str]) -> Any:
    _require("mlflow", "mlflow")
    from lightning.pytorch.loggers import MLFlowLogger

    if uri.startswith("file:"):
        os.environ.setdefault(MLFLOW_FILE_STORE_ENV, "true")
    logging.getLogger("lightning.pytorch.loggers.mlflow").setLevel(logging.ERROR)  # "Experiment ... Creating it."
    try:
        logger = MLFlowLogger(experiment_name=experiment or "pneumoscope", run_name=run_name, tracking_uri=uri,
                              tags=tags or None, run_id=run_id)
        _ = logger.experiment  # connect now: a bad URI or store is one clear error before any training
    except Exception as error:  # noqa: BLE001 - MLflow raises its own and transport errors
        raise ConfigError(f"cannot log to MLflow at {uri} ({type(error).__name__}: {str(error)[:300]}).",
                          fix="check tracking.mlflow_uri (a local folder, sqlite:///mlflow.db or a server URL) "
                              "and that the server is reachable.") from None
    return logger


def _is_tensorboard(logger: Any) -> bool:
    from lightning.pytorch.loggers import TensorBoardLogger

    return isinstance(logger, TensorBoardLogger)


def _as_markdown(name: str, text: str) -> str:
    """TensorBoard renders text as Markdown: code and data files are shown verbatim (indented)."""
    if name.endswith(".md"):
        return text
    return "\n".join("    " + line for line in text.splitlines())


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_global_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return rank_zero_only.rank == 0
