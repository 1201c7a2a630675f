"""Models shipped with the package: ``pneumoscope/bundled/<name>/{model.safetensors, model.json, MODEL_CARD.md,
applicability.safetensors}``.

``$PNEUMOSCOPE_BUNDLED_DIR`` (one folder, or several separated by ``os.pathsep``) is searched before the package's
own folder, so that a team can add its own named models without reinstalling. ``$PNEUMOSCOPE_DEFAULT_MODEL``
changes which name ``pneumoscope predict IMAGE`` uses when no model is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pneumoscope.errors import ModelError
from pneumoscope.models.meta import META_FILE, WEIGHTS_FILE

BUNDLED_DIR_ENV = "PNEUMOSCOPE_BUNDLED_DIR"
DEFAULT_MODEL_ENV = "PNEUMOSCOPE_DEFAULT_MODEL"
DEFAULT_MODEL = "kermany-binary"
CARD_FILE = "MODEL_CARD.md"


@dataclass(frozen=True)
class BundledModel:
    """One bundled model folder."""

    name: str
    path: Path

    @property
    def card_text(self) -> str | None:
        """The model card (Markdown), or None where the folder has none."""
        card = self.path / CARD_FILE
        return card.read_text(encoding="utf-8") if card.is_file() else None


def package_bundled_dir() -> Path:
    """The package's own folder of bundled models."""
    return Path(__file__).resolve().parents[1] / "bundled"


def bundled_dirs() -> list[Path]:
    """Folders searched for bundled models, in priority order."""
    extra = [Path(p).expanduser() for p in os.environ.get(BUNDLED_DIR_ENV, "").split(os.pathsep) if p]
    return [*extra, package_bundled_dir()]


def default_model_name() -> str:
    """Name of the model used when none is given (``$PNEUMOSCOPE_DEFAULT_MODEL`` or ``kermany-binary``)."""
    return os.environ.get(DEFAULT_MODEL_ENV) or DEFAULT_MODEL


def _is_model_folder(path: Path) -> bool:
    return (path / WEIGHTS_FILE).is_file() and (path / META_FILE).is_file()


def list_bundled() -> list[BundledModel]:
    """All bundled models found, first occurrence of each name winning."""
    found: dict[str, BundledModel] = {}
    for root in bundled_dirs():
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.name not in found and child.is_dir() and _is_model_folder(child):
                found[child.name] = BundledModel(child.name, child)
    return list(found.values())


def is_bundled_name(name: str) -> bool:
    """Whether ``name`` is the name of an installed bundled model."""
    return find_bundled(name) is not None


def find_bundled(name: str) -> BundledModel | None:
    """The bundled model called ``name``, or None."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    for root in bundled_dirs():
        folder = root / name
        if _is_model_folder(folder):
            return BundledModel(name, folder)
    return None


def get_bundled(name: str | None = None) -> BundledModel:
    """The bundled model called ``name`` (default: the default model); ModelError naming the choices if absent."""
    name = name or default_model_name()
    model = find_bundled(name)
    if model is not None:
        return model
    available = ", ".join(m.name for m in list_bundled()) or "none installed"
    raise ModelError(
        f"no bundled model named {name!r} (available: {available}).",
        fix=(
            "pass a run folder, a model.safetensors or an .onnx file, or put a model folder "
            f"(model.safetensors + model.json) into {package_bundled_dir()} or ${BUNDLED_DIR_ENV}."
        ),
    )


def _metrics_lines(metrics: object) -> list[str]:
    """Markdown table rows for ``val_metrics`` ({name: value} or {name: {value|estimate, low, high}})."""
    if not isinstance(metrics, dict) or not metrics:
        return ["(no validation metrics recorded in model.json)"]
    lines = ["| metric | value | 95 % CI |", "|---|---|---|"]
    for name, value in metrics.items():
        if isinstance(value, dict):
            point = value.get("value", value.get("estimate", value.get("mean")))
            if point is None:  # a per-class breakdown: one row per class
                lines += [f"| {name} {key} | {v:.3f} | |" for key, v in value.items() if isinstance(v, int | float)]
                continue
            low, high = value.get("low", value.get("ci_low")), value.get("high", value.get("ci_high"))
            ci = f"{low:.3f} – {high:.3f}" if isinstance(low, int | float) and isinstance(high, int | float) else ""
            lines.append(f"| {name} | {point:.3f} | {ci} |" if isinstance(point, int | float) else f"| {name} | {point} | |")
        elif isinstance(value, int):
            lines.append(f"| {name} | {value} | |")
        elif isinstance(value, float):
            lines.append(f"| {name} | {value:.3f} | |")
    return lines


def _ci_cell(value: object) -> str:
    if not isinstance(value, dict) or not isinstance(value.get("value"), int | float):
        return "| | |"
    low, high = value.get("low"), value.get("high")
    ci = f"{low:.3f} – {high:.3f}" if isinstance(low, int | float) and isinstance(high, int | float) else ""
    return f"| {value['value']:.3f} | {ci} |"


def _evaluation_lines(evaluation: dict) -> list[str]:
    """Markdown sections for a generalisation evaluation: validation with bootstrap CIs, proxies, stress test.

    ``evaluation`` holds any of ``validation`` (with ``ci`` from ``metrics.bootstrap.headline_with_ci``),
    ``unseen_site_normals``, ``resolution_consistency`` (``robustness.proxies`` summaries) and ``stress`` (a summary
    of ``robustness.stress_test``)."""
    lines: list[str] = []
    ci = (evaluation.get("validation") or {}).get("ci")
    if isinstance(ci, dict):
        title = (f"## Validation metrics with 95 % bootstrap CIs ({ci.get('n')} images, "
                 f"{ci.get('n_boot')} resamples of {ci.get('resampled', 'images')})")
        lines += ["", title, "", "| metric | value | 95 % CI |", "|---|---|---|"]
        lines += [f"| {key} {_ci_cell(ci.get(key))}" for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc")]
        per_class = ci.get("per_class") or {}
        if len(per_class) == 2:  # binary: the positive class's recall is the sensitivity, normal's the specificity
            (negative, neg_values), (positive, pos_values) = per_class.items()
            lines += [f"| sensitivity ({positive}) {_ci_cell(pos_values.get('sensitivity'))}",
                      f"| specificity ({negative} recall) {_ci_cell(neg_values.get('sensitivity'))}"]
        else:
            for cls, values in per_class.items():
                lines += [f"| {cls} {metric} {_ci_cell(values.get(metric))}" for metric in ("sensitivity", "specificity")]
        if ci.get("threshold") is not None:
            lines.append(f"\nDecisions at the stored threshold {ci['threshold']:.4f}.")
    normals, resolution = evaluation.get("unseen_site_normals"), evaluation.get("resolution_consistency")
    if normals or resolution:
        lines += ["", "## Generalisation proxies (see docs/GENERALISATION.md)", ""]
    if normals:
        lines.append(
            f"- Unseen-site adult normals (COVID-19 Radiography Database, {normals['n']} images, other hospitals): "
            f"specificity {normals['specificity']:.3f} (95 % CI {normals['specificity_ci_low']:.3f} – "
            f"{normals['specificity_ci_high']:.3f}), mean p(pneumonia) {normals['mean_p_pneumonia']:.3f}.")
    if resolution:
        lines.append(
            f"- Resolution consistency ({resolution['n']} full-resolution originals vs their 224-px copies): "
            f"agreement {resolution['agreement']:.3f}, mean |Δp| {resolution['mean_abs_delta_p']:.3f}.")
    stress = evaluation.get("stress")
    if stress:
        lines += ["", "## Acquisition-shift stress test", "",
                  (f"{stress['n_images']} validation images, {stress['n_conditions']} perturbation × severity "
                   f"conditions: clean accuracy {stress['clean_accuracy']:.3f}; mean accuracy under perturbation "
                   f"{stress.get('mean_accuracy_no_invert', stress['mean_accuracy']):.3f} (specificity "
                   f"{stress.get('mean_specificity_no_invert', stress['mean_specificity']):.3f}) without inversion; "
                   f"worst {stress['worst']} ({stress['worst_accuracy']:.3f})"
                   + (f"; inverted intensities {stress['invert_accuracy']:.3f}." if "invert_accuracy" in stress
                      else "."))]
    return lines


def render_model_card(meta: dict, name: str, run_dir: Path | None = None, evaluation: dict | None = None,
                      notes: list[str] | None = None) -> str:
    """A model card (Markdown) from ``model.json`` and, where present, the run folder's config and manifest.

    ``evaluation``: validation CIs, proxy and stress summaries (see ``_evaluation_lines``); ``notes``: extra lines
    for the Limitations section (e.g. how training was reduced)."""
    import json

    classes = ", ".join(meta.get("classes", []))
    configs = _training_configs(run_dir) if run_dir is not None else []
    data_lines = ["(the run folder's manifest.csv was not available: see the training configuration)"]
    if run_dir is not None and (run_dir / "manifest.csv").is_file():
        import pandas as pd

        manifest = pd.read_csv(run_dir / "manifest.csv")
        column = f"label_{meta.get('task')}"
        if {"split", "source", column} <= set(manifest.columns):
            used = manifest[manifest["split"].isin(["train", "val"])]
            counts = used.groupby(["split", "source", column]).size()
            data_lines = ["Images used (the official test split was not used):"]
            data_lines += [f"- {split} / {source} / {label}: {count}" for (split, source, label), count in counts.items()]
    threshold = meta.get("threshold")
    lines = [
        f"# {name}",
        "",
        (f"Pneumoscope {meta.get('task')} classifier ({classes}); architecture `{meta.get('architecture')}`, "
         f"{meta.get('image_size')} px grey input, preprocessing {json.dumps(meta.get('preprocessing', {}))}."),
        "",
        "**Research use only. This is not a medical device** and must not be used for diagnosis or treatment.",
        "",
        "## Data",
        *data_lines,
        "Choices (epochs, threshold, temperature) were made on a patient-grouped validation split only.",
        "",
        "## Operating point",
        (f"- threshold on p({meta.get('classes', ['', 'positive'])[-1]}): {threshold} "
         f"({meta.get('threshold_method') or 'n/a'})") if threshold is not None else "- argmax over the classes",
        f"- temperature (calibration): {meta.get('temperature', 1.0)}",
        "",
        "## Validation metrics",
        *_metrics_lines(meta.get("val_metrics")),
        *_evaluation_lines(evaluation or {}),
        "",
        "## Intended use",
        "Research on pneumonia detection in chest X-rays: screening experiments, teaching, benchmarking.",
        "",
        "## Limitations",
        ("- Kermany's images are pediatric (1–5 years) frontal X-rays from one hospital: adults, other sites, "
         "devices and lateral views are outside that distribution; performance there is unknown."),
        ("- Single-site images carry site-specific markers (and the Kermany training copy is squashed to 224 px); "
         "the model may use shortcuts that do not transfer."),
        ("- Every prediction says whether the model applies to the image (`in_scope`, `scope_reason`; see the "
         "applicability section and docs/SCOPE.md); no check catches every unusual input."),
        "- Labels in the source data are imperfect (image-level, from clinical records).",
        *[f"- {note}" for note in notes or []],
    ]
    if configs:
        lines += ["", "## Training configuration", "",
                  "Every value as trained; `preset` names the preset the run started from, as it was defined then."]
        for title, path in configs:
            lines += (["", f"### {title}"] if title else []) + ["", "```yaml", shareable_config(path).rstrip(), "```"]
    lines += ["", f"Pneumoscope version: {meta.get('pneumoscope_version')}", ""]
    return "\n".join(lines)


def _training_configs(run_dir: Path) -> list[tuple[str, Path]]:
    """The config files a card shows: each member's for an ensemble whose member runs are at hand (its own
    config.yaml is its first member's), else the run's own; titled by member."""
    import json

    summary = run_dir / "summary.json"
    members = (json.loads(summary.read_text()).get("members") or []) if summary.is_file() else []
    member_configs = [Path(m) / "config.yaml" for m in members]
    if members and all(path.is_file() for path in member_configs):
        return [(f"member `{path.parent.name}`", path) for path in member_configs]
    return [("", run_dir / "config.yaml")] if (run_dir / "config.yaml").is_file() else []


def install_bundled(
    run_dir: Path, name: str, dest_root: Path | None = None, fp16: bool = True,
    evaluation: dict | None = None, notes: list[str] | None = None,
) -> Path:
    """Make ``run_dir``'s model a bundled model ``name``: weights (fp16 to keep the package small), model.json, a
    generated MODEL_CARD.md (kept if the run folder has one; ``evaluation`` and ``notes`` as in ``render_model_card``)
    and the run's applicability check (``applicability.safetensors``) where it has one — fit it on the installed
    folder with ``pneumoscope scope fit NAME --manifest RUN_DIR/manifest.csv`` (``applicability_fit``) otherwise.
    No ONNX file is shipped: ``Predictor`` exports one on first use into the cache (faster CPU prediction).
    Returns the new folder."""
    import shutil

    from pneumoscope.models import load_classifier, save_classifier
    from pneumoscope.models.applicability import APPLICABILITY_FILE

    dest = (dest_root or package_bundled_dir()) / name
    if dest.exists():
        raise ModelError("a bundled model of that name exists.", path=dest, fix="remove it first or pick a new name.")
    model, meta = load_classifier(run_dir)
    save_classifier(model, meta, dest, half=fp16)
    card = run_dir / CARD_FILE
    (dest / CARD_FILE).write_text(card.read_text(encoding="utf-8") if card.is_file() else
                                  render_model_card(meta, name, run_dir, evaluation, notes), encoding="utf-8")
    if (run_dir / APPLICABILITY_FILE).is_file():
        shutil.copy(run_dir / APPLICABILITY_FILE, dest)
    for path in dest.iterdir():
        path.chmod(0o644)  # package data: readable by every user, whatever the umask of whoever installed it
    return dest


def shareable_config(path: Path) -> str:
    """A run's config.yaml as a model card shows it: absolute paths of the training machine become paths under
    ``$PNEUMOSCOPE_DATA`` (``<data>/chest_xray``) or the bare file / folder name."""
    import yaml

    from pneumoscope.files import read_yaml
    from pneumoscope.paths import data_root

    root = data_root().resolve()

    def shareable(value: object) -> object:
        if isinstance(value, dict):
            return {key: shareable(item) for key, item in value.items()}
        if isinstance(value, list):
            return [shareable(item) for item in value]
        if isinstance(value, str) and Path(value).is_absolute():
            where = Path(value)
            try:
                return f"<data>/{where.resolve().relative_to(root).as_posix()}"
            except ValueError:
                return where.name
        return value

    return yaml.safe_dump(shareable(read_yaml(path)), sort_keys=False, default_flow_style=None, width=10_000)
