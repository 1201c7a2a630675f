"""The public Python API: what the ``pneumoscope`` command does, as functions (``import pneumoscope as ps``).

Every name in ``__all__`` is re-exported from the package root (``ps.load_model``, ``ps.train``, ...) and is the
public, stable API:

- within a release series (``0.1.x``) public functions and classes keep their names, their positional arguments
  and the meaning of their results; new keyword arguments, result columns and attributes may be added;
- a change that breaks code written against the API comes only in a new minor release (``0.2``), after a release
  in which the old form still works and raises a ``DeprecationWarning`` naming the replacement;
- everything else (``pneumoscope.data``, ``.training``, ``.evaluation``, ``.inference``, ``.serve``, ``.cli``,
  and any name that starts with ``_``) is internal and may change in any release. The exceptions of
  ``pneumoscope.errors`` are public too: user errors are ``PneumoscopeError`` subclasses whose message names the
  file and the fix.

The command line calls these functions and only parses arguments and prints; the files they write (run folders,
evaluation folders, comparisons) are the ones docs/ARCHITECTURE.md describes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pneumoscope.errors import ConfigError, DataError, PneumoscopeError

if TYPE_CHECKING:
    import pandas as pd
    from PIL.Image import Image

    from pneumoscope.inference.export import ExportResult
    from pneumoscope.inference.predictor import Predictor
    from pneumoscope.inference.results_file import PredictionCounts
    from pneumoscope.training.config import TrainConfig

__all__ = [
    "Comparison",
    "Evaluation",
    "Explanation",
    "Model",
    "PneumoscopeError",
    "TrainConfig",
    "bundled_models",
    "compare",
    "ensemble",
    "evaluate",
    "export_onnx",
    "load_model",
    "make_config",
    "read_dataset",
    "resume",
    "split_dataset",
    "summarize_dataset",
    "train",
]


def __getattr__(name: str) -> Any:
    # ``TrainConfig`` (pydantic) is imported on first use, so that ``pneumoscope predict`` starts without it.
    if name == "TrainConfig":
        from pneumoscope.training.config import TrainConfig

        return TrainConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------- data


def read_dataset(paths: str | Path | Sequence[str | Path], *, workers: int | None = None,
                 progress: bool = False) -> pd.DataFrame:
    """Read one or several data sets into a manifest: one row per image, every file read, hashed and decoded.

    Accepts the Kermany ``chest_xray/`` layout, the COVID-19 Radiography Database, any class-per-folder tree and CSV
    manifests (``path,label[,patient_id][,split]``); ``NAME=PATH`` sets a source's name. Unreadable files stay in
    the table with ``status == "error"`` and the reason. The columns are those of docs/ARCHITECTURE.md.

    Args:
        paths: A data set folder or CSV file, or a list of them (combined into one manifest).
        workers: Processes that scan the files (default: the CPU cores, at most 8).
        progress: Show a progress bar on stderr.

    Returns:
        The manifest (a pandas DataFrame), with ``split`` still empty.

    Example:
        >>> import pneumoscope as ps
        >>> manifest = ps.read_dataset("chest_xray")
        >>> sorted(manifest["label_binary"].unique())
        ['normal', 'pneumonia']
        >>> bool((manifest["status"] == "ok").all())
        True
    """
    from pneumoscope.data.manifest import build_manifest

    sources = [paths] if isinstance(paths, str | Path) else list(paths)
    return build_manifest([str(p) for p in sources], workers=workers, progress=progress)


def summarize_dataset(manifest: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The tables ``pneumoscope data inspect`` prints, by name.

    Args:
        manifest: A manifest from ``read_dataset``.

    Returns:
        ``counts`` (images per source × official split × label, patients), ``patients``, ``sizes`` (image sizes),
        ``duplicates`` (identical files) and ``problems`` (unreadable files and warnings).

    Example:
        >>> import pneumoscope as ps
        >>> tables = ps.summarize_dataset(ps.read_dataset("chest_xray"))
        >>> sorted(tables)
        ['counts', 'duplicates', 'patients', 'problems', 'sizes']
        >>> len(tables["problems"])
        0
    """
    from pneumoscope.data.summary import inspect_tables

    return inspect_tables(manifest)


def split_dataset(manifest: pd.DataFrame, task: str = "binary", *, val_fraction: float = 0.15,
                  test_fraction: float = 0.0, folds: int = 0, seed: int = 42,
                  max_images: int | None = None) -> pd.DataFrame:
    """Patient-grouped, class-stratified splits (``split`` = train / val / test / excluded) and optional folds.

    The archive's own test rows stay ``test``; a patient never sits on two sides, nor does an identical image (a
    ``LeakageError`` otherwise). The same seed gives the same split.

    Args:
        manifest: A manifest from ``read_dataset``.
        task: ``binary``, ``3class`` or ``4class`` (rows outside the task become ``excluded``).
        val_fraction: Share of the patients carved out for validation.
        test_fraction: Share carved out for test from sources without an official test split.
        folds: Cross-validation folds over train + val (``fold`` column; 0: none).
        seed: Random seed.
        max_images: First take a patient-grouped, class-stratified subsample of about this many task images
            (the official test rows are kept), for quick experiments.

    Returns:
        A copy of the manifest with ``split`` and ``fold`` set.

    Example:
        >>> import pneumoscope as ps
        >>> split = ps.split_dataset(ps.read_dataset("chest_xray"), task="binary", seed=0)
        >>> sorted(split["split"].unique())
        ['test', 'train', 'val']
        >>> by_split = split.groupby("split")["patient_id"].apply(set)
        >>> by_split["train"].isdisjoint(by_split["val"])
        True
    """
    from pneumoscope.data.splits import assign_splits
    from pneumoscope.tasks import task_classes
    from pneumoscope.training.run import subsample_task

    task_classes(task)  # an unknown task is a ConfigError before any work
    if max_images is not None:
        manifest = subsample_task(manifest, task, max_images, seed)
    return assign_splits(manifest, task, val_fraction, seed, folds=folds, test_fraction=test_fraction)


# ---------------------------------------------------------------------------------------------------- training


def make_config(config: TrainConfig | Mapping[str, Any] | str | Path | None = None, *, preset: str | None = None,
                overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A validated training config: the defaults, then the preset, then ``config``, then ``overrides``.

    Args:
        config: A ``TrainConfig``, a mapping of sections (as in a YAML config file) or the path of a YAML file.
        preset: ``recommended`` (default), ``standardised``, ``plain`` or ``strong``; default: the config's
            ``preset`` key. A ``TrainConfig`` keeps its own.
        overrides: Sections applied last, e.g. ``{"trainer": {"epochs": 1}}``.

    Returns:
        The resolved config; an unknown key or a bad value is a ``ConfigError`` naming the key.

    Example:
        >>> import pneumoscope as ps
        >>> config = ps.make_config({"task": "3class"}, overrides={"trainer": {"epochs": 2}})
        >>> config.task, config.trainer.epochs, config.preset
        ('3class', 2, 'recommended')
        >>> ps.make_config({"trainer": {"epoch": 2}})
        Traceback (most recent call last):
        ...
        pneumoscope.errors.ConfigError: unknown config key 'trainer.epoch'. Fix: did you mean 'epochs'?
    """
    from pneumoscope.training.config import deep_merge, resolve_config

    updates = dict(overrides or {})
    if config is None or isinstance(config, str | Path):
        return resolve_config(config, updates, preset=preset)
    from pneumoscope.training.config import TrainConfig

    if isinstance(config, TrainConfig):
        if preset is not None and preset != config.preset:
            raise ConfigError(f"this TrainConfig is already resolved with preset {config.preset!r}; a preset applies "
                              "under a config, not over it.",
                              fix=f"make the config with preset={preset!r} from its source (mapping or YAML file).")
        if not updates:
            return config
        return resolve_config(None, deep_merge(config.to_dict(), updates), preset=config.preset)
    if isinstance(config, Mapping):
        return resolve_config(None, deep_merge(dict(config), updates), preset=preset)
    raise ConfigError(f"a training config is a TrainConfig, a mapping or a YAML file path, not "
                      f"{type(config).__name__}.", fix="pass e.g. {'task': 'binary'} or 'config.yaml'.")


def train(config: TrainConfig | Mapping[str, Any] | str | Path | None = None, out: str | Path | None = None, *,
          preset: str | None = None, overrides: Mapping[str, Any] | None = None,
          manifest: pd.DataFrame | None = None, progress: bool = True,
          on_epoch: Any = None) -> Path:
    """Train a classifier into a run folder: config.yaml, manifest.csv, metrics.csv, the best model, curves.

    The epoch, the binary threshold and the temperature are chosen on the validation split; the test split is never
    read. With ``tracking.loggers`` naming ``tensorboard`` or ``mlflow``, the run is also logged there (config,
    per-epoch metrics, git commit, version) and, unless ``tracking.evaluate`` is off, scored on its validation split
    at the end (metrics with bootstrap CIs, the model card and the report logged as well).

    Args:
        config: As for ``make_config`` (a ``TrainConfig``, a mapping of sections or a YAML path).
        out: The run folder to create (default ``runs/<time>-<task>-<model>``).
        preset: As for ``make_config``.
        overrides: As for ``make_config``.
        manifest: A manifest with splits made by ``split_dataset``: trained on as it is (its ``train`` and ``val``
            rows) instead of reading ``data.paths``.
        progress: Show progress bars on stderr.
        on_epoch: Called after each epoch with the epoch's row of metrics.csv (a dict) and the Lightning trainer.

    Returns:
        The run folder.

    Example:
        >>> import pneumoscope as ps
        >>> run = ps.train({"preset": "plain", "data": {"paths": ["chest_xray"], "image_size": 32},
        ...                 "model": {"name": "simple_cnn", "pretrained": False},
        ...                 "trainer": {"epochs": 1, "batch_size": 8}}, "runs/example", progress=False)
        >>> sorted(p.name for p in run.iterdir() if p.suffix in (".csv", ".json", ".yaml"))
        ['config.yaml', 'manifest.csv', 'metrics.csv', 'model.json', 'summary.json']
    """
    from pneumoscope.training.run import train as train_run

    resolved = make_config(config, preset=preset, overrides=overrides)
    run_dir = train_run(resolved, out, progress=progress, on_epoch=on_epoch, manifest=manifest)
    _track_final_evaluation(resolved, run_dir, progress)
    return run_dir


def resume(run_dir: str | Path, *, device: str | None = None, num_workers: int | str | None = None,
           progress: bool = True, on_epoch: Any = None) -> Path:
    """Continue an interrupted run from its last finished epoch, with its own config and splits.

    Args:
        run_dir: The run folder of ``train``.
        device: Where to go on (``cpu``, ``cuda``, ``auto``); default: as configured.
        num_workers: Data-loader processes (a number or ``auto``); default: as configured.
        progress: Show progress bars on stderr.
        on_epoch: As for ``train``.

    Returns:
        The run folder. A finished run is a ``ConfigError`` (there is nothing to resume).

    Example:
        >>> import pneumoscope as ps
        >>> ps.resume("runs/example")
        Traceback (most recent call last):
        ...
        pneumoscope.errors.ConfigError: runs/example: this run has already finished (summary.json exists); ...
    """
    from pneumoscope.training.config import load_run_config
    from pneumoscope.training.resume import resume as resume_run

    finished = resume_run(run_dir, device=device, num_workers=num_workers, progress=progress, on_epoch=on_epoch)
    _track_final_evaluation(load_run_config(finished), finished, progress)
    return finished


def ensemble(runs: Sequence[str | Path], out: str | Path) -> Path:
    """Combine finished runs of one task and one split into one model: the mean of their probabilities.

    Each member keeps its own temperature; the ensemble's binary threshold is chosen on the members' common
    validation split, with their threshold method (the test split is not read). The folder it writes is a model
    folder like a run's (``model.safetensors`` holds every member), so ``load_model``, ``evaluate``,
    ``export_onnx`` and ``pneumoscope serve`` take it; predicting costs the members' time added up.

    Args:
        runs: Two or more run folders of ``train``, on the same data and split (``data.split_seed``).
        out: The ensemble's folder (it must not hold a model yet).

    Returns:
        The ensemble's folder.

    Example:
        >>> import pneumoscope as ps
        >>> same_split = {"seed": 1, "data": {"split_seed": 42}}  # runs/example: seed 42, split by it
        >>> second = ps.train("runs/example/config.yaml", "runs/example-seed1", overrides=same_split, progress=False)
        >>> combined = ps.ensemble(["runs/example", second], "runs/example-ensemble")
        >>> ps.load_model(combined).card["architecture"]
        'mean_probability_ensemble'
        >>> ps.ensemble(["runs/example", "runs/example"], "runs/again")
        Traceback (most recent call last):
        ...
        pneumoscope.errors.ConfigError: a run folder is given twice. ...
    """
    from pneumoscope.training.ensemble import combine_runs

    return combine_runs(runs, out)


def _track_final_evaluation(config: TrainConfig, run_dir: Path, progress: bool) -> None:
    """A tracked run: score its validation split and log the metrics with CIs, the model card and the report."""
    from pneumoscope.training.tracking import is_tracked

    if not (is_tracked(config) and config.tracking.evaluate and _is_rank_zero()):
        return
    result = evaluate(run_dir, split="val", proxies=config.tracking.proxies, progress=progress)
    from pneumoscope.evaluation.tracking import log_model_card

    _log_evaluation(run_dir, result.folder)
    log_model_card(run_dir, result.folder)


def _is_rank_zero() -> bool:
    """False in the extra processes of a torchrun launch (they train, but do not evaluate or report)."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


# ---------------------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate`` wrote: the evaluation folder and its ``metrics.json``.

    Attributes:
        folder: The evaluation folder (``metrics.json``, ``predictions.csv``, ``report.html``, robustness files).
        metrics: The content of ``metrics.json`` (see docs/ARCHITECTURE.md).
    """

    folder: Path
    metrics: dict[str, Any] = field(repr=False)

    @property
    def report(self) -> Path:
        """The self-contained HTML report."""
        return self.folder / "report.html"

    @property
    def predictions(self) -> pd.DataFrame:
        """One row per scored image: path, source, patient, label, prediction, class probabilities."""
        import pandas as pd

        return pd.read_csv(self.folder / "predictions.csv")

    def summary(self) -> pd.DataFrame:
        """The headline figures with their 95 % bootstrap CIs (columns ``value``, ``low``, ``high``), as
        ``pneumoscope evaluate`` prints them, and the generalisation proxies where they ran."""
        import pandas as pd

        headline = self.metrics["headline"]
        rows = [(key, headline[key]) for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc")]
        per_class = headline["per_class"]
        rows += [(f"sensitivity {name}", values["sensitivity"]) for name, values in per_class.items()]
        if len(per_class) == 2:
            rows.append(("specificity", per_class[list(per_class)[1]]["specificity"]))
        robustness = self.metrics.get("robustness") or {}
        unseen = robustness.get("unseen_site_normals") or {}
        if unseen.get("specificity") is not None:
            rows.append(("unseen-site normals specificity", {"value": unseen["specificity"],
                                                             "low": unseen["specificity_ci_low"],
                                                             "high": unseen["specificity_ci_high"]}))
        resolution = robustness.get("resolution_consistency") or {}
        if resolution.get("agreement") is not None:
            rows.append(("full-res vs 224 px agreement", {"value": resolution["agreement"]}))
        table = pd.DataFrame([{"figure": name, "value": entry.get("value"), "low": entry.get("low"),
                               "high": entry.get("high")} for name, entry in rows])
        table[["value", "low", "high"]] = table[["value", "low", "high"]].astype(float)
        return table.set_index("figure")


def evaluate(run: str | Path, data: str | Path | Sequence[str | Path] | None = None, *, split: str = "auto",
             out: str | Path | None = None, proxies: bool = True, max_images: int | None = None,
             skip_unknown_labels: bool = False, bootstrap: int = 1000, stress_images: int | None = None,
             severities: Sequence[int] | None = None, proxy_images: int | None = None,
             data_root: str | Path | None = None, seed: int = 0, device: str = "cpu", progress: bool = False,
             log_to: str | Path | None = None) -> Evaluation:
    """Score a trained run on labelled data: metrics with bootstrap CIs, calibration, per source, proxies, report.

    Images of a patient or content the run trained on are left out and counted; the test split is read here only.
    Binary / 3-class models trained on Kermany images also get the generalisation proxies (unseen-site adult
    normals, full-resolution consistency) and the acquisition-shift stress test, skipped with the reason where their
    data is missing.

    Args:
        run: The run folder.
        data: Labelled data (folders or CSV manifests); default: the run's own manifest.
        split: ``test``, ``val`` (the run's validation split, optimistic), ``all``, or ``auto`` (test where the data
            has one, else all).
        out: Output folder (default ``RUN/eval-<split>[-<data name>]``).
        proxies: Run the generalisation proxies and the stress test.
        max_images: Patient-grouped subsample of the data.
        skip_unknown_labels: Leave out (and count) images whose labels the model cannot score instead of stopping.
        bootstrap: Bootstrap resamples (patients) for the 95 % CIs.
        stress_images: Validation images for the stress test (default 100).
        severities: Stress-test severities (default 1, 3, 5).
        proxy_images: Only the first N unseen-site normals.
        data_root: Folder holding ``covid19_radiography/`` and ``chest_xray_fullres_sample/`` (default
            ``$PNEUMOSCOPE_DATA``).
        seed: Seed of the subsamples and the bootstrap.
        device: ``cpu``, ``cuda`` or ``auto``.
        progress: Show progress bars on stderr.
        log_to: A tracked run folder (trained with ``tracking.loggers`` mlflow / tensorboard): log the headline
            metrics with CIs, the proxies, metrics.json and the report to its MLflow run / TensorBoard log.

    Returns:
        The ``Evaluation`` (folder and metrics).

    Example:
        >>> import pneumoscope as ps
        >>> result = ps.evaluate("runs/example", split="val", proxies=False, bootstrap=100)
        >>> result.folder.name, result.report.is_file()
        ('eval-val', True)
        >>> list(result.summary().columns)
        ['value', 'low', 'high']
    """
    from pneumoscope.evaluation.evaluate import evaluate as evaluate_run
    from pneumoscope.results import read_metrics
    from pneumoscope.robustness.suite import parse_severities
    from pneumoscope.training.tracking import require_tracked

    if log_to is not None:
        require_tracked(log_to)  # before the work, not after it
    sources = None if data is None else [str(p) for p in ([data] if isinstance(data, str | Path) else data)]
    folder = evaluate_run(run, sources, split, out, proxies=proxies, max_images=max_images,
                          skip_unknown_labels=skip_unknown_labels, n_boot=bootstrap, stress_images=stress_images,
                          severities=parse_severities(severities) if severities else None,
                          proxy_images=proxy_images, data_root=data_root, seed=seed, device=device,
                          progress=progress)
    if log_to is not None:
        _log_evaluation(log_to, folder)
    return Evaluation(folder, read_metrics(folder))


def _log_evaluation(run_dir: str | Path, eval_dir: Path) -> None:
    from pneumoscope.evaluation.tracking import log_evaluation

    log_evaluation(run_dir, eval_dir)


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` wrote.

    Attributes:
        table: One row per model, strategy and evaluation: accuracy and per-class precision / sensitivity / F1 with
            ``_low`` / ``_high`` (95 % CI) or ``_std`` (cross-validated) companions.
        files: ``csv``, ``md`` and ``html``: the paths of the table's three renderings.
    """

    table: pd.DataFrame = field(repr=False)
    files: dict[str, Path]

    @property
    def markdown(self) -> str:
        """The Markdown table (as ``pneumoscope compare`` prints it)."""
        return self.files["md"].read_text(encoding="utf-8")


def compare(targets: str | Path | Sequence[str | Path], *, out: str | Path | None = None,
            data: Sequence[str | Path] | None = None, overrides: Sequence[str] = (), progress: bool = False,
            log_to: str | Path | None = None) -> Comparison:
    """A Table-II-like comparison of runs (or of an experiment grid, run first), with CIs.

    Each run contributes its validation split (``eval-val``, scored when missing) and any other ``eval-*`` folder;
    a cross-validation folder contributes the mean ± std over its folds.

    Args:
        targets: Run folders / cv folders, or one grid YAML file.
        out: Run folders: the comparison folder (default ``runs/compare-<time>``); grid: the root of its folder
            (default ``runs``).
        data: Grid only: data paths for every cell.
        overrides: Grid only: ``KEY=VALUE`` config overrides for every cell, e.g. ``["trainer.epochs=1"]``.
        progress: Show progress bars on stderr.
        log_to: A tracked run folder: log the comparison files to its MLflow run.

    Returns:
        The ``Comparison`` (table and files).

    Example:
        >>> import pneumoscope as ps
        >>> comparison = ps.compare(["runs/example"], out="runs/compare-example")
        >>> comparison.table.loc[0, ["model", "evaluated_on"]].tolist()
        ['simple_cnn', "val (run's manifest)"]
        >>> sorted(comparison.files)
        ['csv', 'html', 'md']
    """
    from pneumoscope.evaluation.compare import compare as compare_runs
    from pneumoscope.training.tracking import require_tracked

    if log_to is not None:
        require_tracked(log_to)
    paths = [targets] if isinstance(targets, str | Path) else list(targets)
    files = compare_runs(paths, out, [str(p) for p in data] if data else None, list(overrides), progress=progress)
    if log_to is not None:
        from pneumoscope.evaluation.tracking import log_comparison

        log_comparison(log_to, files)
    import pandas as pd

    return Comparison(pd.read_csv(files["csv"]), files)


# ---------------------------------------------------------------------------------------------------- inference


def bundled_models() -> list[str]:
    """Names of the models shipped with the package (and of ``$PNEUMOSCOPE_BUNDLED_DIR``), the default first.

    Example:
        >>> import pneumoscope as ps
        >>> ps.bundled_models()[0]
        'kermany-binary'
    """
    from pneumoscope.inference import bundled

    names = [model.name for model in bundled.list_bundled()]
    default = bundled.default_model_name()
    return sorted(names, key=lambda name: (name != default, name))


def load_model(model: str | Path | None = None, *, device: str = "cpu", task: str | None = None,
               backend: str = "auto") -> Model:
    """Load a model for prediction and explanation.

    Args:
        model: A run folder, a ``model.safetensors``, an ``.onnx`` file (``export_onnx``) or a bundled model name
            (``bundled_models()``); default: the default bundled model.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        task: When given, the model must have been trained for this task (a ``ModelError`` otherwise).
        backend: ``auto`` (onnxruntime on the CPU where an ONNX export of the same weights exists, else PyTorch),
            ``pytorch`` or ``onnx``.

    Returns:
        The ``Model``.

    Example:
        >>> import pneumoscope as ps
        >>> model = ps.load_model("kermany-binary", backend="pytorch")
        >>> model.classes, model.task
        (('normal', 'pneumonia'), 'binary')
    """
    from pneumoscope.inference import bundled
    from pneumoscope.inference.loading import load_predictor

    reference = str(model) if model is not None else bundled.default_model_name()
    return Model(load_predictor(reference, device=device, task=task, backend=backend))


class Model:
    """A loaded model (``load_model``): predicts labels, class probabilities and the scope verdict (``in_scope``,
    ``scope_reason``), and explains predictions with Grad-CAM, with the preprocessing, temperature and threshold it was
    trained with.

    Safe to share between threads for ``predict``; ``explain`` calls are serialised.
    """

    def __init__(self, predictor: Predictor):
        self._predictor = predictor

    def __repr__(self) -> str:
        return f"Model({self.name!r}, task={self.task!r}, backend={self.backend!r})"

    @property
    def name(self) -> str:
        """Identity of the weights: the model's name or architecture and task, and a hash prefix."""
        return self._predictor.model_id

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names; index 0 is always ``normal``."""
        return self._predictor.classes

    @property
    def task(self) -> str | None:
        """``binary``, ``3class`` or ``4class`` (None for a model without the metadata)."""
        return self._predictor.task

    @property
    def image_size(self) -> int:
        """Side of the square grey input, pixels."""
        return self._predictor.image_size

    @property
    def threshold(self) -> float | None:
        """Binary models: the operating threshold on p(pneumonia), chosen on validation; else None."""
        return self._predictor.threshold

    @property
    def backend(self) -> str:
        """``pytorch`` or ``onnx``."""
        return self._predictor.backend

    @property
    def card(self) -> dict[str, Any]:
        """Identity, classes, preprocessing, operating point, validation metrics and the model card text."""
        return self._predictor.card

    def prediction_columns(self, tta: int = 0) -> list[str]:
        """The columns of ``predict``'s table (and of ``pneumoscope predict``'s results file).

        Example:
            >>> import pneumoscope as ps
            >>> ps.load_model("kermany-binary", backend="pytorch").prediction_columns()
            ['path', 'label', 'p_normal', 'p_pneumonia', 'threshold', 'in_scope', 'scope_reason', 'scope_checks', 'error']
        """
        from pneumoscope.inference.results_file import prediction_columns

        return prediction_columns(self.classes, tta)

    def predict(self, images: Any, *, tta: int = 0, batch_size: int = 32, workers: int = 2) -> pd.DataFrame:
        """Classify chest X-rays.

        Args:
            images: A file or folder path (folders are walked recursively; DICOM files too), a grey ``(H, W)`` or
                RGB(A) ``(H, W, 3|4)`` numpy array (uint8, uint16, or float in [0, 1]), a PIL image, or a list of
                these.
            tta: Test-time views to average (0 = off, up to 10); adds ``p_std_<class>`` columns.
            batch_size: Images per forward pass.
            workers: Threads decoding files ahead of the model.

        Returns:
            One row per image, in order (``prediction_columns``): ``path`` (None for in-memory images), ``label``,
            ``p_<class>`` (temperature-scaled probabilities), ``threshold``, ``in_scope`` (False when the model
            does not apply to the input: do not trust its label), ``scope_reason`` (why not: ``adult``,
            ``not_a_chest_xray``, ``lateral``, ``modality CT``...; empty when in scope), ``scope_checks`` (every
            check's value and result), and ``error`` for a file that could not be read (its other columns empty).

        Raises:
            DataError: An input path that does not exist, or an array or object that is not an image.

        Example:
            >>> import numpy as np
            >>> import pneumoscope as ps
            >>> model = ps.load_model("kermany-binary", backend="pytorch")
            >>> table = model.predict(np.full((256, 256), 128, dtype=np.uint8))
            >>> table.loc[0, "label"] in model.classes
            True
            >>> round(float(table.loc[0, "p_normal"] + table.loc[0, "p_pneumonia"]), 3)
            1.0
        """
        from pneumoscope.inference.sources import iter_image_files

        items = images if isinstance(images, list | tuple) else [images]
        if all(isinstance(item, str | Path) for item in items):
            rows = list(self.iter_predictions(items, tta=tta, batch_size=batch_size, workers=workers))
        else:  # a missing path is an error here too; folders give their files
            expanded = [file for item in items
                        for file in (iter_image_files([item]) if isinstance(item, str | Path) else [item])]
            rows = self._predict_in_memory(expanded, tta, batch_size)
        import pandas as pd

        return pd.DataFrame(rows, columns=self.prediction_columns(tta))

    def iter_predictions(self, inputs: Iterable[str | Path], *, tta: int = 0, batch_size: int = 32,
                         workers: int = 2) -> Iterator[dict[str, Any]]:
        """Predict on files lazily: one row (a dict of ``prediction_columns``) per file, in order, computed a batch
        at a time (at most two batches of decoded images in memory), for folders of any size.

        Args:
            inputs: Files and folders (walked recursively).
            tta: As for ``predict``.
            batch_size: As for ``predict``.
            workers: As for ``predict``.

        Example:
            >>> import pneumoscope as ps
            >>> model = ps.load_model("kermany-binary", backend="pytorch")
            >>> rows = model.iter_predictions(["chest_xray/val"])
            >>> first = next(rows)
            >>> first["label"] in model.classes, first["error"]
            (True, None)
        """
        from pneumoscope.inference.results_file import iter_prediction_rows

        return iter_prediction_rows(self._predictor, inputs, tta=tta, batch_size=batch_size, workers=workers)

    def predict_to_file(self, inputs: Sequence[str | Path], out: str | Path, *, tta: int = 0, batch_size: int = 32,
                        workers: int = 2, progress: bool = True) -> PredictionCounts:
        """Predict on files and folders into a results file, as ``pneumoscope predict`` does: one row per file
        (``prediction_columns``), streamed as it is computed.

        Args:
            inputs: Files and folders (walked recursively).
            out: The results file: ``.csv``, ``.jsonl`` (one JSON object per line) or ``.json`` (one array).
            tta: As for ``predict``.
            batch_size: As for ``predict``.
            workers: As for ``predict``.
            progress: Show a progress bar on stderr.

        Returns:
            The ``PredictionCounts``: ``images``, ``errors`` (unreadable files; ``first_error`` is the first
            reason), ``out_of_scope`` (images the model does not apply to) and ``labels`` (count per predicted
            class).

        Raises:
            DataError: No image file in ``inputs``.
            ConfigError: An unsupported results format.

        Example:
            >>> import tempfile
            >>> from pathlib import Path
            >>> import pneumoscope as ps
            >>> model = ps.load_model("kermany-binary")
            >>> counts = model.predict_to_file(["chest_xray/val/NORMAL"], Path(tempfile.mkdtemp()) / "p.csv",
            ...                                progress=False)
            >>> counts.images > 0, counts.errors, sum(counts.labels.values()) == counts.images
            (True, 0, True)
        """
        from pneumoscope.inference.results_file import predict_to_file

        return predict_to_file(self._predictor, list(inputs), Path(out), batch_size=batch_size, tta=tta,
                               workers=workers, progress=progress)

    def explain(self, image: Any, *, method: str = "gradcam", target_class: str | int | None = None) -> Explanation:
        """A Grad-CAM (or Grad-CAM++) heatmap of one image for the predicted class or a chosen one.

        Needs the PyTorch model (a run folder, ``model.safetensors`` or bundled name), not an ONNX file.

        Args:
            image: A file path, a numpy array or a PIL image (as for ``predict``).
            method: ``gradcam`` or ``gradcam++``.
            target_class: Class to explain (name or index); default: the predicted one.

        Returns:
            The ``Explanation``.

        Example:
            >>> import pneumoscope as ps
            >>> model = ps.load_model("kermany-binary")
            >>> explanation = model.explain("chest_xray/val/PNEUMONIA/person900_bacteria_0.jpeg")
            >>> explanation.heatmap.shape == explanation.overlay.shape[:2], explanation.target_class
            (True, 'pneumonia')
        """
        result = self._predictor.explain_array(_loaded(image, self._predictor), method=method,
                                               target_class=target_class)
        return Explanation(heatmap=result["heatmap"], overlay=result["overlay"], label=result["label"],
                           target_class=result["target_class"], method=result["method"],
                           probabilities=result["probabilities"], in_scope=bool(result["in_scope"]),
                           scope_reason=result["scope_reason"])

    def _predict_in_memory(self, items: Sequence[Any], tta: int, batch_size: int) -> list[dict[str, Any]]:
        from pneumoscope.inference.results_file import prediction_row

        rows = []
        for start in range(0, len(items), max(1, batch_size)):
            chunk = items[start:start + batch_size]
            loaded, errors = [], {}
            for i, item in enumerate(chunk):
                try:
                    loaded.append(_loaded(item, self._predictor))
                except DataError as error:
                    if not isinstance(item, str | Path):
                        raise
                    errors[i] = str(error)
            results = iter(self._predictor.predict_arrays(loaded, tta=tta))
            for i, item in enumerate(chunk):
                row = {"path": str(item) if isinstance(item, str | Path) else None, "error": errors.get(i, "")}
                if i not in errors:
                    row.update(next(results))
                rows.append(prediction_row(row, self.classes, tta))
        return rows



@dataclass(frozen=True)
class Explanation:
    """A Grad-CAM heatmap of one image (``Model.explain``).

    Attributes:
        heatmap: float32 ``(H, W)`` in [0, 1], at the input image's size.
        overlay: uint8 ``(H, W, 3)``: the heatmap (JET colours) blended over the image.
        label: The predicted class.
        target_class: The class the heatmap explains.
        method: ``gradcam`` or ``gradcam++``.
        probabilities: Class → probability.
        in_scope: False when the model does not apply to the input (do not trust the label or the heatmap).
        scope_reason: Why not (empty when in scope; see ``Model.predict``).
    """

    heatmap: np.ndarray = field(repr=False)
    overlay: np.ndarray = field(repr=False)
    label: str
    target_class: str
    method: str
    probabilities: dict[str, float]
    in_scope: bool
    scope_reason: str

    def save(self, folder: str | Path, stem: str = "image") -> dict[str, Path]:
        """Write ``<stem>_<method>_<class>_overlay.png`` and ``..._heatmap.png`` into ``folder``.

        Example:
            >>> import numpy as np
            >>> import pneumoscope as ps
            >>> explanation = ps.load_model("kermany-binary").explain(np.full((64, 64), 0.5))
            >>> paths = explanation.save("cams", "grey")
            >>> sorted(path.name.split("_")[-1] for path in paths.values())
            ['heatmap.png', 'overlay.png']
        """
        from pneumoscope.inference.explain import save_explanation

        return save_explanation({"overlay": self.overlay, "heatmap": self.heatmap, "method": self.method,
                                 "target_class": self.target_class}, Path(folder), stem)


def export_onnx(model: str | Path, out: str | Path | None = None, *, opset: int = 17) -> ExportResult:
    """Export a trained model to ONNX: dynamic batch, the metadata inside, checked, parity-tested against PyTorch.

    ``load_model`` reads the file back; so do other runtimes (the input is the grey image in [0, 1], ``(B, 1, S, S)``;
    the outputs are ``logits`` and, where the model has one, ``features``).

    Args:
        model: A run folder, ``model.safetensors`` or bundled model name.
        out: The ONNX file (default: ``model.onnx`` in the run folder, or in the working directory).
        opset: ONNX opset version.

    Returns:
        The ``ExportResult``: ``path``, ``max_abs_prob_diff`` (onnxruntime vs PyTorch), ``outputs``, ``size_bytes``.

    Example:
        >>> import pneumoscope as ps
        >>> result = ps.export_onnx("runs/example")
        >>> result.path.name, result.max_abs_prob_diff < 1e-4
        ('model.onnx', True)
        >>> ps.load_model(result.path).backend
        'onnx'
    """
    from pneumoscope.inference.export import export_onnx as export_model

    if out is None:
        source = Path(model)
        out = (source if source.is_dir() else Path.cwd()) / "model.onnx"
    return export_model(model, Path(out), opset=opset)


def _loaded(image: Any, predictor: Any) -> Any:
    """A ``LoadedImage`` from a path, a numpy array or a PIL image (PIL images are decoded like a file of them),
    decoded for ``predictor`` (``Predictor.load``)."""
    from pneumoscope.inference.predictor import as_loaded_image

    if isinstance(image, str | Path):
        return predictor.load(Path(image).expanduser())
    if isinstance(image, np.ndarray):
        return as_loaded_image(image)
    if _is_pil_image(image):
        return predictor.load_bytes(_png_bytes(image), "PIL image")
    raise DataError(f"cannot read an image from a {type(image).__name__}.",
                    fix="pass a file path, a numpy array (H, W) / (H, W, 3) or a PIL image.")


def _is_pil_image(value: Any) -> bool:
    from PIL import Image

    return isinstance(value, Image.Image)


def _png_bytes(image: Image) -> bytes:
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, float...: PNG holds none of them
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
