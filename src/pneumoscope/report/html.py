"""The self-contained HTML report: one file, images embedded as base64 data URIs, no external CSS, JS or fonts.

``render_report(sections)`` takes a dict of sections; each key below is optional and an absent (or None)
section is left out, together with its entry in the table of contents. Values:

- ``headline``: ``metrics.bootstrap.headline_with_ci`` result, or ``{"ci": ..., "operating_points": table,
  "note": str}`` (``operating_points``: e.g. the metrics at the stored threshold and at 0.5).
- ``splits``: which split was used for what: ``{split: use}`` (see ``DEFAULT_SPLIT_USES``) or ``{"uses": ...,
  "note": str}``.
- ``data_summary``: ``metrics.tables.data_summary`` result (+ optional ``notes``: list of str).
- ``per_class``, ``per_source``: a table (DataFrame or list of row dicts) or ``{"table": ..., "note": str}``.
- ``confusion_matrix``, ``roc_pr``, ``training_curves``, ``confident_errors``: PNG bytes, a PNG path, or
  ``{"png": ..., "pngs": [more PNGs], "caption": str, "note": str}``.
- ``calibration``: ``{"png": ..., "ece": float, "brier": float, "temperature": float, ...}``.
- ``shortcut_audit``: ``metrics.shortcut.shortcut_audit`` result, or a list of them (e.g. pixels and
  features); a flagged risk is shown in red.
- ``generalisation``: ``{"unseen_site_normals": summary, "resolution_consistency": summary, "note": str}``
  (the summaries of ``robustness.proxies``).
- ``stress_test``: the ``robustness.stress.stress_test`` table, or ``{"table": ..., "png": ..., "note": str}``
  (the bar chart is drawn when no ``png`` is given).
- ``filters``: ``{"filters": png, "feature_maps": png, "note": str}``.
- ``config``: the resolved config (a dict, shown as YAML) or its text.
- ``extra``: a list of ``{"title": str, "png" | "pngs" | "table" | "text" | "pre" | "note": ...}`` sections appended
  at the end (``pre``: preformatted text such as YAML).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup

from pneumoscope.errors import ConfigError, DataError

DEFAULT_SPLIT_USES = {
    "train": "fitting the weights (with augmentation)",
    "val": "choosing the epoch (lowest validation loss), the binary threshold and the temperature",
    "test": "this evaluation only: never used by training, model selection or calibration",
}

UNSEEN_NORMALS_NOTE = ("Adult normal images from other hospitals: a model trained on Kermany only should call "
                       "them normal.")
RESOLUTION_NOTE = ("Full-resolution originals against their 224-px copies: the prediction should not depend on "
                   "the resize.")
PROXY_LABELS = {
    "n": "images", "specificity": "specificity (share called normal)", "mean_p_pneumonia": "mean p(pneumonia)",
    "threshold": "threshold", "agreement": "agreement of predicted class", "n_disagree": "pairs that disagree",
    "mean_abs_delta_p": "mean |Δp(pneumonia)|", "max_abs_delta_p": "largest |Δp(pneumonia)|",
    "max_abs_delta_file": "image with the largest |Δp|", "mean_delta_p": "mean Δp (copy − original)",
    "accuracy_original": "accuracy on the originals", "accuracy_copy": "accuracy on the 224-px copies",
    "folder": "folder",
}


# ------------------------------------------------------------------------------------------------ small pieces
def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _png_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, (str, Path)) and Path(value).is_file():
        data = Path(value).read_bytes()
    else:
        raise DataError(f"expected PNG bytes or a PNG file, got {type(value).__name__} {str(value)[:80]!r}.",
                        fix="pass the bytes returned by pneumoscope.report.plots or an existing .png path.")
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise DataError("an image for the report is not a PNG.", fix="pass PNG bytes (report.plots returns them).")
    return data


def image(value: Any, alt: str, caption: str | None = None) -> Markup:
    """A ``<figure>`` with the PNG embedded as a data URI."""
    encoded = base64.b64encode(_png_bytes(value)).decode("ascii")
    cap = f"<figcaption>{_escape(caption)}</figcaption>" if caption else ""
    return Markup(f'<figure><img src="data:image/png;base64,{encoded}" alt="{_escape(alt)}">{cap}</figure>')


def table(value: Any, caption: str | None = None) -> Markup:
    """An HTML table from a DataFrame or a list of row dicts (numbers formatted; undefined shown as –)."""
    import pandas as pd

    from pneumoscope.metrics.tables import to_html

    frame = value if isinstance(value, pd.DataFrame) else pd.DataFrame(list(value))
    return Markup(f'<div class="table-wrap">{to_html(frame, caption=caption)}</div>')


def key_values(pairs: Sequence[tuple[str, Any]], caption: str | None = None) -> Markup:
    """A two-column table of labelled values."""
    rows = "".join(f"<tr><td>{_escape(k)}</td><td class=num>{_escape(_fmt(v))}</td></tr>" for k, v in pairs)
    cap = f"<caption>{_escape(caption)}</caption>" if caption else ""
    return Markup(f'<div class="table-wrap"><table class="metrics">{cap}<tbody>{rows}</tbody></table></div>')


def text(value: Any, css: str = "") -> Markup:
    """Paragraph(s) of escaped text; a list becomes a bullet list."""
    if value is None:
        return Markup("")
    if isinstance(value, (list, tuple)):
        return Markup("<ul>" + "".join(f"<li>{_escape(v)}</li>" for v in value) + "</ul>")
    klass = f' class="{css}"' if css else ""
    return Markup("".join(f"<p{klass}>{_escape(part)}</p>" for part in str(value).split("\n\n") if part.strip()))


def callout(kind: str, title: str, body: str = "") -> Markup:
    return Markup(f'<div class="callout {kind}"><strong>{_escape(title)}</strong>{_escape(body)}</div>')


def _as_dict(value: Any, main: str) -> dict[str, Any]:
    """``value`` as a dict; a bare value becomes ``{main: value}``."""
    return dict(value) if isinstance(value, Mapping) else {main: value}


def _generic(value: Any, title: str) -> Markup:
    """Render PNG bytes/paths, tables, text, or a dict of ``png`` / ``table`` / ``text`` / ``note`` / ``caption``."""
    import pandas as pd

    if isinstance(value, (bytes, bytearray)) or (isinstance(value, Path) and value.suffix.lower() == ".png"):
        return image(value, title)
    if isinstance(value, pd.DataFrame):
        return table(value)
    if isinstance(value, str):
        return text(value)
    if isinstance(value, Mapping):
        parts = [text(value.get("text"))]
        if value.get("pre") is not None:
            parts.append(Markup(f"<pre>{_escape(value['pre'])}</pre>"))
        for png in value.get("pngs", []) or []:
            parts.append(image(png, title))
        if value.get("png") is not None:
            parts.append(image(value["png"], title, value.get("caption")))
        if value.get("table") is not None:
            parts.append(table(value["table"], value.get("table_caption")))
        parts.append(text(value.get("note"), "note"))
        return Markup("").join(parts)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], Mapping):
        return table(value)
    raise DataError(f"cannot show a {type(value).__name__} in the report section {title!r}.",
                    fix="pass PNG bytes, a table, text, or a dict with png / table / text.")


# ------------------------------------------------------------------------------------------------ sections
def _ci_text(entry: Mapping[str, Any] | None) -> tuple[str, str]:
    if not entry or entry.get("value") is None:
        return "–", ""
    interval = ""
    if entry.get("low") is not None and entry.get("high") is not None:
        interval = f"95 % CI {entry['low']:.3f} – {entry['high']:.3f}"
    return f"{entry['value']:.3f}", interval


def _metric_card(label: str, entry: Mapping[str, Any] | None) -> str:
    value, interval = _ci_text(entry)
    return (f'<div class="metric"><div class="label">{_escape(label)}</div><div class="value">{value}</div>'
            f'<div class="ci">{_escape(interval)}</div></div>')


def _headline(value: Any) -> Markup:
    spec = dict(value) if "ci" in value else {"ci": value}
    ci = spec["ci"]
    cards = [("accuracy", ci.get("accuracy")), ("balanced accuracy", ci.get("balanced_accuracy")),
             ("macro F1", ci.get("macro_f1")), ("ROC-AUC", ci.get("roc_auc"))]
    per_class = ci.get("per_class", {})
    classes = list(per_class)
    if len(classes) == 2:
        positive = classes[1]
        cards += [(f"sensitivity ({positive})", per_class[positive]["sensitivity"]),
                  ("specificity", per_class[positive]["specificity"])]
        if "precision" in per_class[positive]:  # absent from metrics.json of older versions
            cards.append((f"precision ({positive})", per_class[positive]["precision"]))
    body = ['<div class="cards">' + "".join(_metric_card(label, entry) for label, entry in cards) + "</div>"]
    if len(classes) > 2:
        rows = [_per_class_row(name, per_class[name]) for name in classes]
        body.append(table(_floats(rows), "Per class (one-vs-rest) [95 % CI]"))
    if spec.get("operating_points") is not None:
        body.append(table(spec["operating_points"], "Operating points"))
    facts = [f"{ci.get('n', '?')} images"]
    if ci.get("n_boot"):
        unit = "patients" if ci.get("resampled") == "patients" else "images"
        facts.append(f"95 % percentile bootstrap intervals over {ci['n_boot']} resamples of {unit}"
                     + (f" ({ci['n_groups']} patients)" if unit == "patients" else ""))
    if ci.get("threshold") is not None:
        facts.append(f"binary decision at p({classes[1] if len(classes) == 2 else 'positive'}) ≥ "
                     f"{ci['threshold']:.3f}")
    body.append(text("; ".join(facts) + ".", "note"))
    body.append(text(spec.get("note"), "note"))
    return Markup("").join(Markup(b) for b in body)


def _per_class_row(name: str, intervals: Mapping[str, Any]) -> dict[str, Any]:
    from pneumoscope.metrics.bootstrap import PER_CLASS_CI_METRICS

    row: dict[str, Any] = {"class": name}
    for metric in PER_CLASS_CI_METRICS:
        if metric in intervals:
            entry = intervals[metric]
            row.update({metric: entry["value"], f"{metric}_low": entry["low"], f"{metric}_high": entry["high"]})
    return row


def _floats(rows: list[dict[str, Any]]):
    import pandas as pd

    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if column != "class":
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def _splits(value: Any) -> Markup:
    spec = dict(value) if isinstance(value, Mapping) and "uses" in value else {"uses": value}
    uses = spec["uses"]
    pairs = list(uses.items()) if isinstance(uses, Mapping) else list(uses)
    rows = "".join(f"<tr><td><b>{_escape(split)}</b></td><td>{_escape(use)}</td></tr>" for split, use in pairs)
    body = Markup(f'<div class="table-wrap"><table class="metrics"><thead><tr><th>split</th><th>used for</th>'
                  f"</tr></thead><tbody>{rows}</tbody></table></div>")
    return body + text(spec.get("note"), "note")


def _data_summary(value: Any) -> Markup:
    spec = _as_dict(value, "by_split")
    parts = []
    captions = {"by_split": "Images per split and class", "by_source": "Images per source and class",
                "patients": "Patients per split"}
    for key, caption in captions.items():
        if spec.get(key) is not None:
            parts.append(table(spec[key], caption))
    if spec.get("unreadable"):
        parts.append(callout("info", f"{spec['unreadable']} unreadable image(s)",
                             " are listed in the manifest with their error and were left out."))
    parts.append(text(spec.get("notes"), "note"))
    return Markup("").join(parts)


def _figure_section(value: Any, title: str) -> Markup:
    spec = _as_dict(value, "png")
    parts = [text(spec.get("text"))]
    if spec.get("png") is not None:
        parts.append(image(spec["png"], title, spec.get("caption")))
    for png in spec.get("pngs") or []:
        parts.append(image(png, title))
    if spec.get("table") is not None:
        parts.append(table(spec["table"], spec.get("table_caption")))
    parts.append(text(spec.get("note"), "note"))
    return Markup("").join(parts)


def _calibration(value: Any) -> Markup:
    spec = _as_dict(value, "png")
    labels = {"ece": "expected calibration error (ECE, top-label)", "brier": "Brier score",
              "temperature": "temperature (fitted on validation)", "ece_before": "ECE before temperature scaling",
              "brier_before": "Brier score before temperature scaling", "n_bins": "bins"}
    pairs = [(label, spec[key]) for key, label in labels.items() if spec.get(key) is not None]
    kv = key_values(pairs) if pairs else Markup("")
    figure = (Markup('<div class="narrow">') + image(spec["png"], "reliability diagram", spec.get("caption"))
              + Markup("</div>")) if spec.get("png") is not None else Markup("")
    note = text(spec.get("note") or "Reliability: for the images whose largest class probability falls in a bin, "
                "the share predicted correctly. Bars below the diagonal mean over-confidence.", "note")
    return kv + figure + note


def _shortcut(value: Any) -> Markup:
    audits = list(value) if isinstance(value, (list, tuple)) else [value]
    parts = []
    for audit in audits:
        if not audit.get("applicable", True):
            parts.append(callout("info", "Shortcut audit not applicable", f": {audit.get('reason', '')}."))
            continue
        risk = bool(audit.get("risk"))
        title = ("Risk: the source of an image is predictable" if risk else "No strong source signal found")
        parts.append(callout("risk" if risk else "ok", title, audit.get("message", "")))
        pairs = [("input", audit.get("input")), ("classifier", audit.get("classifier")),
                 ("cross-validated AUC (source)", audit.get("auc")),
                 ("balanced accuracy (source)", audit.get("balanced_accuracy")),
                 ("risk threshold (AUC)", audit.get("risk_threshold")),
                 ("patient-grouped folds", audit.get("n_splits")), ("images used", audit.get("n_used")),
                 ("patient groups", audit.get("n_groups"))]
        pairs += [(f"images from {name}", count) for name, count in (audit.get("sources") or {}).items()]
        pairs += [(f"AUC {name} vs rest", auc) for name, auc in (audit.get("per_source_auc") or {}).items()]
        parts.append(key_values([(k, v) for k, v in pairs if v is not None]))
        if audit.get("png") is not None:
            parts.append(image(audit["png"], "shortcut audit"))
    parts.append(text("A simple classifier (logistic regression) is trained, with patient-grouped "
                      "cross-validation, to predict which source an image comes from. If it can, a disease "
                      "model can score by recognising the source (hospital, scanner, age group) instead of "
                      "the disease: compare the per-source results and test on data from another source.", "note"))
    return Markup("").join(parts)


def _shortcut_flagged(value: Any) -> bool:
    audits = list(value) if isinstance(value, (list, tuple)) else [value]
    return any(isinstance(a, Mapping) and a.get("risk") for a in audits)


def _proxy_pairs(summary: Mapping[str, Any]) -> list[tuple[str, Any]]:
    pairs = []
    for key, value in summary.items():
        if key.endswith(("_ci_low", "_ci_high")) or key in ("proxy", "n_bootstrap", "ci_level"):
            continue
        low, high = summary.get(f"{key}_ci_low"), summary.get(f"{key}_ci_high")
        if isinstance(value, float) and low is not None and high is not None:
            value = f"{value:.3f} [95 % CI {low:.3f} – {high:.3f}]"
        pairs.append((PROXY_LABELS.get(key, key.replace("_", " ")), value))
    return pairs


def _generalisation(value: Any) -> Markup:
    spec = dict(value)
    parts = [text(spec.get("text"))]
    titles = {
        "unseen_site_normals": ("Unseen-site normals", UNSEEN_NORMALS_NOTE),
        "resolution_consistency": ("Resolution / encoding consistency", RESOLUTION_NOTE),
    }
    for key, (title, explanation) in titles.items():
        if spec.get(key) is None:
            continue
        parts.append(Markup(f"<h3>{_escape(title)}</h3>"))
        parts.append(text(explanation, "note"))
        parts.append(key_values(_proxy_pairs(spec[key])))
    for extra in spec.get("tables", []) or []:
        parts.append(table(extra["table"], extra.get("caption")))
    parts.append(text(spec.get("note"), "note"))
    return Markup("").join(parts)


def _stress(value: Any) -> Markup:
    import pandas as pd

    from pneumoscope.report.plots import plot_stress

    spec = dict(value) if isinstance(value, Mapping) else {"table": value}
    frame = pd.DataFrame(spec["table"]) if spec.get("table") is not None else None
    png = spec.get("png")
    if png is None and frame is not None:
        png = plot_stress(frame)
    parts = [text(spec.get("text"))]
    if png is not None:
        parts.append(image(png, "stress test", spec.get("caption")))
    if frame is not None:
        shown = [c for c in ("perturbation", "severity", "parameter", "accuracy", "specificity", "sensitivity",
                             "auc", "flip_rate", "n") if c in frame.columns]
        parts.append(Markup("<details><summary>Table: every perturbation and severity</summary>")
                     + table(frame[shown]) + Markup("</details>"))
    parts.append(text(spec.get("note"), "note"))
    return Markup("").join(parts)


def _filters(value: Any) -> Markup:
    spec = _as_dict(value, "filters")
    parts = []
    if spec.get("filters") is not None:
        parts.append(image(spec["filters"], "first-layer filters", spec.get("filters_caption")))
    if spec.get("feature_maps") is not None:
        parts.append(image(spec["feature_maps"], "feature maps", spec.get("feature_maps_caption")))
    parts.append(text(spec.get("note"), "note"))
    return Markup("").join(parts)


def _config(value: Any) -> Markup:
    if isinstance(value, Mapping):
        import yaml

        shown = yaml.safe_dump(json.loads(json.dumps(value, default=str)), sort_keys=False, allow_unicode=True)
    else:
        shown = str(value)
    return Markup(f"<pre>{_escape(shown)}</pre>")


Renderer = Callable[[Any], Markup]
SECTIONS: tuple[tuple[str, str, Renderer | None], ...] = (
    ("headline", "Headline metrics", _headline),
    ("splits", "Which split was used for what", _splits),
    ("data_summary", "Data", _data_summary),
    ("per_class", "Per-class metrics", None),
    ("per_source", "Per-source results", None),
    ("scope", "In scope and out of scope", None),
    ("confusion_matrix", "Confusion matrix", None),
    ("roc_pr", "ROC and precision-recall curves", None),
    ("calibration", "Calibration", _calibration),
    ("training_curves", "Training curves", None),
    ("confident_errors", "Most confident errors", None),
    ("shortcut_audit", "Shortcut audit", _shortcut),
    ("generalisation", "Generalisation proxies", _generalisation),
    ("stress_test", "Acquisition-shift stress test", _stress),
    ("filters", "First-layer filters and feature maps", _filters),
    ("config", "Configuration", _config),
)
SECTION_KEYS = tuple(key for key, _, _ in SECTIONS) + ("extra",)


def _slug(title: str, taken: set[str]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    candidate, i = slug, 2
    while candidate in taken:
        candidate, i = f"{slug}-{i}", i + 1
    taken.add(candidate)
    return candidate


def build_sections(sections: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sections present, in report order: ``{"id", "title", "body", "flag"}`` each."""
    unknown = sorted(set(sections) - set(SECTION_KEYS))
    if unknown:
        raise ConfigError(f"unknown report section(s) {unknown}.", fix=f"use: {', '.join(SECTION_KEYS)}.")
    built, taken = [], set()
    for key, title, renderer in SECTIONS:
        value = sections.get(key)
        if value is None:
            continue
        body = renderer(value) if renderer is not None else _figure_or_table(value, title)
        flag = key == "shortcut_audit" and _shortcut_flagged(value)
        built.append({"id": _slug(key, taken), "title": title, "body": body, "flag": flag})
    for extra in sections.get("extra") or []:
        title = str(extra.get("title", "More"))
        built.append({"id": _slug(title, taken), "title": title, "body": _generic(extra, title), "flag": False})
    return built


def _figure_or_table(value: Any, title: str) -> Markup:
    import pandas as pd

    if isinstance(value, Mapping):
        return _figure_section(value, title) if ("png" in value or "text" in value) else _generic(value, title)
    if isinstance(value, (pd.DataFrame, list, tuple)):
        return table(value)
    return _generic(value, title)


def render_report(sections: Mapping[str, Any], title: str = "Pneumoscope evaluation report",
                  meta: Mapping[str, Any] | None = None, kind: str = "evaluation report") -> str:
    """The report as one HTML string (see the module docstring for the sections)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from pneumoscope.version import __version__

    environment = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                              autoescape=select_autoescape(["html", "j2"]))
    return environment.get_template("report.html.j2").render(
        title=title, kind=kind, meta=[(str(k), _fmt(v)) for k, v in (meta or {}).items() if v is not None],
        sections=build_sections(sections), version=__version__,
        generated=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))


def write_report(sections: Mapping[str, Any], out: str | Path, title: str = "Pneumoscope evaluation report",
                 meta: Mapping[str, Any] | None = None, kind: str = "evaluation report") -> Path:
    """Render the report and write it to ``out`` atomically; returns the path."""
    from pneumoscope.files import atomic_write_text

    return atomic_write_text(out, render_report(sections, title, meta, kind))
