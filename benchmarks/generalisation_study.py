"""Generalisation study: validation metrics, proxies and stress test of trained run folders.

    python benchmarks/generalisation_study.py evaluate RUN_DIR [--stress-n 200] [--severities 1 3 5]
    python benchmarks/generalisation_study.py evaluate RUN_DIR [RUN_DIR...] [--tta N] --out DIR   # variants
    python benchmarks/generalisation_study.py table RUN_DIR... [--markdown OUT.md] [--csv OUT.csv]
    python benchmarks/generalisation_study.py docs docs/GENERALISATION.md RUN_DIR...   # rewrite its 3 tables
    python benchmarks/generalisation_study.py docs docs/GENERALISATION.md --prefix FULLSIZE_ RUN_DIR...
    python benchmarks/generalisation_study.py rank RUN_DIR... [--csv OUT.csv]      # the selection rule
    python benchmarks/generalisation_study.py decide RUN_DIR... [--docs FILE --prefix P]  # on the seed means
    python benchmarks/generalisation_study.py record RUN_DIR... --dest docs/generalisation-runs
    python benchmarks/generalisation_study.py bundle RUN_DIR NAME [--dest DIR]

``bundle`` installs an evaluated run as a bundled model (``inference.bundled.install_bundled``): fp16 weights,
model.json, a model card with the validation CIs, proxies, stress summary and training notes; then writes its
training population and the scope verdict's measured flag rates (``pneumoscope scope fit``, the shipped
applicability check) and counts the out-of-scope verdicts on real X-rays.

``evaluate`` writes ``RUN_DIR/generalisation/``: ``results.json`` (validation metrics at the stored threshold and
at 0.5 with patient-bootstrap CIs, the unseen-site-normals and resolution-consistency proxies, a stress summary),
``stress.csv``, ``unseen_normals.csv``, ``resolution.csv``, ``val_predictions.csv``. With ``--tta N`` each image is
predicted as the mean of N views (``pneumoscope predict --tta``; the stored threshold is kept), and with several run
folders (trained on the same split) as the mean of their calibrated probabilities, at a Youden threshold chosen on the
ensemble's validation probabilities; such variants need ``--out DIR`` (written to ``DIR/generalisation``).
``table`` gathers several runs or variants into one table (CSV and Markdown); ``rank`` applies the full-size study's
selection rule (``pneumoscope.metrics.ranking``) to them, ``decide`` its third and fourth steps to the finalists' runs
and their variants (seed means per recipe: the recipe chosen and the model shipped; with ``--docs`` also written
between the file's ``DECISION_TABLE`` markers); ``record`` copies the small files of evaluated runs (config, summary,
metrics, results, stress table) into a folder kept in the repository, from which ``table``, ``rank`` and ``docs``
work as from the run folders. Models are read with ``inference.Predictor`` (the same preprocessing as predict);
the proxies and the stress test are ``pneumoscope.robustness``'s.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscope.data.imaging import load_image
from pneumoscope.inference.loading import load_predictor
from pneumoscope.inference.predictor import Predictor
from pneumoscope.metrics.bootstrap import headline_with_ci
from pneumoscope.metrics.classification import classification_metrics
from pneumoscope.metrics.ranking import PROXIES, decide_between_finalists, score_runs, seed_means
from pneumoscope.metrics.threshold import choose_threshold
from pneumoscope.robustness import resolution_consistency, stress_test, summary_by_kind, unseen_site_normals
from pneumoscope.tasks import label_column

OUT_DIR = "generalisation"


def predict_fn_of(predictors: list[Predictor], tta: int = 0, batch_size: int = 64):
    """``list[(H, W) float] -> probs (N, C)``: the mean over ``predictors`` (each with its own preprocessing,
    temperature and backend) of their probabilities, each the mean of ``tta`` views when ``tta`` > 0."""
    classes = predictors[0].classes

    def predict_one(predictor: Predictor, images: list[np.ndarray]) -> np.ndarray:
        rows = []
        for start in range(0, len(images), batch_size):
            results = predictor.predict_arrays(images[start:start + batch_size], tta=tta)
            rows += [[r["probabilities"][c] for c in classes] for r in results]
        return np.asarray(rows, dtype=np.float64)

    def predict(images: list[np.ndarray]) -> np.ndarray:
        return np.mean([predict_one(predictor, images) for predictor in predictors], axis=0)

    return predict


def validation_rows(run_dir: Path, task: str) -> pd.DataFrame:
    """The run's validation rows (path, label, patient) from its manifest."""
    manifest = pd.read_csv(run_dir / "manifest.csv")
    column = label_column(task)
    val = manifest.loc[manifest["split"].eq("val") & manifest[column].fillna("").astype(str).ne("")]
    return val[["path", column, "patient_id"]].rename(columns={column: "label"}).reset_index(drop=True)


def _headline(metrics: dict[str, Any], classes: tuple[str, ...]) -> dict[str, Any]:
    per = metrics["per_class"]
    out = {"accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
           "roc_auc": metrics["roc_auc"], "specificity": per["normal"]["recall"]}
    if len(classes) == 2:
        out["sensitivity"] = per[classes[1]]["recall"]
    else:
        out["sensitivity_any_pneumonia"] = None
    return out


def validation_metrics(classes: tuple[str, ...], threshold: float | None, val: pd.DataFrame, predict,
                       choose: bool = False) -> tuple[dict[str, Any], pd.DataFrame]:
    """Validation metrics at the stored threshold (or, with ``choose``, a Youden threshold chosen on these
    validation probabilities), at 0.5 (binary) and arg-max, with patient-bootstrap CIs."""
    images = [load_image(Path(p)) for p in val["path"]]
    probs = predict(images)
    y = np.array([classes.index(label) for label in val["label"]])
    if choose and len(classes) == 2:
        threshold = choose_threshold(y, probs[:, 1])
    result: dict[str, Any] = {"n": int(y.size), "classes": list(classes), "threshold": threshold}
    points = {"argmax": None}
    if len(classes) == 2:
        points = {"stored_threshold": threshold, "at_0.5": 0.5}
    for name, threshold in points.items():
        metrics = classification_metrics(y, probs, classes, threshold=threshold)
        result[name] = _headline(metrics, classes)
        result[name]["confusion_matrix"] = metrics["confusion_matrix"]
        if len(classes) > 2:
            pneumonia = y != 0
            called = probs.argmax(axis=1) != 0
            result[name]["sensitivity_any_pneumonia"] = float(called[pneumonia].mean())
    main = next(iter(points.values()))
    result["ci"] = headline_with_ci(y, probs, classes, groups=val["patient_id"].tolist(), threshold=main)
    frame = val.copy()
    for i, c in enumerate(classes):
        frame[f"p_{c}"] = probs[:, i]
    return result, frame


def stress_subset(val: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """A class-stratified random subset of ``n`` validation images (fixed seed: the same images for every run)."""
    if n >= len(val):
        return val
    share = val["label"].value_counts(normalize=True)
    parts = [val.loc[val["label"].eq(c)].sample(n=max(1, round(n * f)), random_state=seed) for c, f in share.items()]
    return pd.concat(parts).sort_values("path").reset_index(drop=True)


def stress_summary(stress: pd.DataFrame) -> dict[str, Any]:
    """Clean figures, means over all perturbed conditions, the worst condition, and inverted intensities."""
    clean = stress.iloc[0]
    perturbed = stress.iloc[1:]
    worst = perturbed.loc[perturbed["accuracy"].idxmin()]
    summary = {
        "clean_accuracy": float(clean["accuracy"]), "clean_specificity": float(clean["specificity"]),
        "mean_accuracy": float(perturbed["accuracy"].mean()),
        "mean_specificity": float(perturbed["specificity"].mean()),
        "mean_sensitivity": float(perturbed["sensitivity"].mean()),
        "mean_flip_rate": float(perturbed["flip_rate"].mean()),
        "worst": f"{worst['perturbation']} {int(worst['severity'])}", "worst_accuracy": float(worst["accuracy"]),
        "n_conditions": len(perturbed), "n_images": int(clean["n"]),
    }
    invert = perturbed.loc[perturbed["perturbation"].eq("invert")]
    if len(invert):
        summary["invert_accuracy"] = float(invert["accuracy"].iloc[0])
        summary["invert_specificity"] = float(invert["specificity"].iloc[0])
    no_invert = perturbed.loc[perturbed["perturbation"].ne("invert")]
    summary["mean_accuracy_no_invert"] = float(no_invert["accuracy"].mean())
    summary["mean_specificity_no_invert"] = float(no_invert["specificity"].mean())
    summary["by_kind"] = summary_by_kind(stress)
    return summary


def evaluate(run_dirs: list[Path], stress_n: int, severities: tuple[int, ...], progress: bool, tta: int = 0,
             out_root: Path | None = None) -> dict[str, Any]:
    """Every figure of the study for one run folder, or a variant (TTA, an ensemble of runs on the same split);
    written to ``OUT_ROOT/generalisation`` (default: the run folder's)."""
    run_dir = run_dirs[0]
    variant = len(run_dirs) > 1 or tta > 0
    if variant and out_root is None:
        raise SystemExit("an ensemble or --tta needs --out DIR (the run folders' own results stay as they are)")
    out = (out_root or run_dir) / OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    predictors = [load_predictor(d, backend="pytorch") for d in run_dirs]
    classes = predictors[0].classes
    predict = predict_fn_of(predictors, tta)
    summary = json.loads((run_dir / "summary.json").read_text())
    task = predictors[0].task or summary["task"]
    timings: dict[str, float] = {}

    started = time.perf_counter()
    val = validation_rows(run_dir, task)
    for other in run_dirs[1:]:
        if not validation_rows(other, task)["path"].equals(val["path"]):
            raise SystemExit(f"{other} was validated on other images than {run_dir}: an ensemble needs one split")
    val_result, val_frame = validation_metrics(classes, predictors[0].threshold, val, predict,
                                               choose=len(run_dirs) > 1)
    val_frame.to_csv(out / "val_predictions.csv", index=False)
    timings["validation"] = time.perf_counter() - started

    threshold = val_result["threshold"] if len(classes) == 2 else None
    started = time.perf_counter()
    normals, normals_rows = unseen_site_normals(predict, None, classes, threshold=threshold,
                                                progress=progress)
    normals_rows.to_csv(out / "unseen_normals.csv", index=False)
    normals_05 = float((normals_rows["p_pneumonia"] < 0.5).mean())
    timings["unseen_normals"] = time.perf_counter() - started

    started = time.perf_counter()
    resolution, resolution_rows = resolution_consistency(predict, None, classes, threshold=threshold,
                                                         progress=progress)
    resolution_rows.to_csv(out / "resolution.csv", index=False)
    timings["resolution"] = time.perf_counter() - started

    started = time.perf_counter()
    subset = stress_subset(val, stress_n)
    images = [load_image(Path(p)) for p in subset["path"]]
    stress = stress_test(images, subset["label"].tolist(), predict, classes, severities=severities,
                         threshold=threshold, progress=progress)
    stress.to_csv(out / "stress.csv", index=False)
    timings["stress"] = time.perf_counter() - started

    result = {
        "run_dir": str(out_root or run_dir), "members": [str(d) for d in run_dirs], "tta": tta,
        "task": task, "preset": _preset(run_dir),
        "seed": _config(run_dir).get("seed") if len(run_dirs) == 1 else None, "best_epoch": summary.get("best_epoch"),
        "train_wall_seconds": summary.get("wall_seconds"), "validation": val_result,
        "unseen_site_normals": {**normals, "specificity_at_0.5": normals_05},
        "resolution_consistency": resolution, "stress": stress_summary(stress),
        "stress_settings": {"n_images": len(subset), "severities": list(severities), "seed": 0},
        "eval_seconds": timings,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2, default=float))
    return result


def _config(run_dir: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def _preset(run_dir: Path) -> str | None:
    return _config(run_dir).get("preset")


def _leaves(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


# Levers outside the presets' keys that a study run may set (shown after the recipe when set).
LEVER_DEFAULTS: dict[str, Any] = {"data.clahe": False}


RECIPE_SECTIONS = ("model", "augment", "balance", "optim", "loss")
STUDY_CONFIGS = Path(__file__).resolve().parent.parent / "experiments" / "generalisation"


@functools.cache
def _candidates() -> dict[str, dict[str, Any]]:
    """Every recipe a run may have been trained with, fully resolved: the presets and the study's config files."""
    from pneumoscope.training.config import resolve_config
    from pneumoscope.training.presets import preset_names

    # the study's configs first: where a preset is the same recipe (``recommended`` is ``framing``), a run keeps
    # the name it was compared under
    configs = {path.stem: resolve_config(path) for path in sorted(STUDY_CONFIGS.glob("*.yaml"))}
    configs |= {name: resolve_config(preset=name) for name in preset_names()}
    return {name: _leaves(config.model_dump(mode="json"), "") for name, config in configs.items()}


def _recipe_levers(name: str) -> dict[str, Any]:
    """Candidate ``name``'s values of the sections that make a recipe (``RECIPE_SECTIONS``)."""
    return {key: value for key, value in _candidates()[name].items() if key.split(".")[0] in RECIPE_SECTIONS}


def recipe(run_config: dict[str, Any]) -> str:
    """The recipe (a preset or a study config, resolved today) whose values a run's config matches, plus the keys
    where it differs: the name the run was trained under may since have changed meaning (``recommended`` did,
    docs/GENERALISATION.md)."""
    config = _leaves(run_config)
    best = None
    for name in _candidates():
        diff = [f"{key}={config.get(key)}" for key, value in _recipe_levers(name).items()
                if key in config and config[key] != value]
        if best is None or len(diff) < len(best[1]):
            best = (name, diff)
    name, diff = best
    label = name if not diff else f"{name} but {', '.join(diff)}"
    extras = [f"{key}={config.get(key)}" for key, default in LEVER_DEFAULTS.items()
              if config.get(key, default) not in (default, None)]
    return label + "".join(f" + {extra}" for extra in extras)


def _precision(run_dir: Path) -> str:
    """The precision the run trained in (from its summary: ``auto`` meant fp32 on CPU before bf16 became its CPU
    default)."""
    summary = _summary(run_dir)
    return {"32-true": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}.get(summary.get("precision"), "?")


def _members(run_dir: Path, results: dict[str, Any]) -> list[Path]:
    """The run folders of a result: the run itself, or a variant's (ensemble, TTA) members, its siblings."""
    members = [Path(m).name for m in results.get("members") or []]
    if not members or members == [run_dir.name]:
        return [run_dir]
    return [run_dir.parent / name for name in members]


def _variant_recipe(members: list[Path], tta: int) -> str:
    """The recipe column of a result: its run's recipe, ``ensemble of A + B`` for an ensemble, ``+ TTA N``."""
    recipes = [recipe(_config(member)) for member in members]
    label = recipes[0] if len(recipes) == 1 else "ensemble of " + " + ".join(recipes)
    return label + (f" + TTA {tta}" if tta else "")


def _training_seconds(run_dir: Path, summary: dict[str, Any]) -> float | None:
    """The run's epochs summed over every resumed segment (a summary's ``wall_seconds`` is its last process only)."""
    if "train_seconds" in summary:
        return summary["train_seconds"]
    metrics = run_dir / "metrics.csv"
    return round(float(pd.read_csv(metrics)["seconds"].sum()), 1) if metrics.is_file() else summary.get("wall_seconds")


STRESS_KINDS = ("photometric", "framing", "sharpness", "noise")


def _by_kind(run_dir: Path, stress: dict[str, Any]) -> dict[str, Any]:
    """Balanced accuracy per stress kind (from the summary, or from stress.csv for results written before it)."""
    by_kind = stress.get("by_kind")
    if by_kind is None:
        by_kind = summary_by_kind(pd.read_csv(run_dir / OUT_DIR / "stress.csv"))
    return {f"stress_{k}_bal": by_kind[k]["balanced_accuracy"] if k in by_kind else None for k in STRESS_KINDS}


def table(run_dirs: list[Path]) -> pd.DataFrame:
    """One row per run: validation, proxies and stress summary."""
    rows = []
    for run_dir in run_dirs:
        path = run_dir / OUT_DIR / "results.json"
        if not path.is_file():
            print(f"skipped {run_dir}: no {path}")
            continue
        r = json.loads(path.read_text())
        members = _members(run_dir, r)
        member = members[0]
        config = _config(member)
        v = r["validation"]
        main = v.get("stored_threshold") or v.get("argmax")
        half = v.get("at_0.5", {})
        u, res, s = r["unseen_site_normals"], r["resolution_consistency"], r["stress"]
        summaries = [_summary(m) for m in members]
        summary = summaries[0]
        rows.append({
            "run": run_dir.name, "task": r["task"], "recipe": _variant_recipe(members, r.get("tta") or 0),
            "seed": "" if r["seed"] is None else str(r["seed"]),  # ensembles have none; keep "0", not "0.000"
            "px": config["data"]["image_size"], "epochs": config["trainer"]["epochs"], "precision": _precision(member),
            "best_epoch": str(r["best_epoch"]) if len(members) == 1 else "",
            "train_s": sum(_training_seconds(m, info) or 0.0 for m, info in zip(members, summaries, strict=True)),
            "train_img_s": summary.get("mean_images_per_second") if len(members) == 1 else None,
            "val_acc": main["accuracy"], "val_spec": main["specificity"],
            "val_sens": main.get("sensitivity", main.get("sensitivity_any_pneumonia")), "val_auc": main["roc_auc"],
            "threshold": v["threshold"], "val_acc_0.5": half.get("accuracy"), "val_spec_0.5": half.get("specificity"),
            "val_sens_0.5": half.get("sensitivity"),
            "unseen_spec": u["specificity"], "unseen_spec_0.5": u["specificity_at_0.5"],
            "unseen_mean_p": u["mean_p_pneumonia"],
            "res_agree": res["agreement"], "res_mean_abs_dp": res["mean_abs_delta_p"],
            "stress_mean_acc": s["mean_accuracy_no_invert"], "stress_mean_spec": s["mean_specificity_no_invert"],
            "stress_worst": s["worst"], "stress_worst_acc": s["worst_accuracy"],
            "invert_acc": s.get("invert_accuracy"), **_by_kind(run_dir, s),
        })
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if np.isnan(value) else f"{value:.3f}" if abs(value) < 10 else f"{value:.0f}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _ci(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return ""
    return f"{entry['value']:.3f} ({entry['low']:.3f}–{entry['high']:.3f})"


def ci_table(run_dirs: list[Path]) -> str:
    """Markdown: the main figures of each run with their 95 % bootstrap intervals."""
    header = ("| run | val accuracy | val AUC | val specificity | val sensitivity | unseen-site specificity "
              "| unseen mean p(pneumonia) |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for run_dir in run_dirs:
        path = run_dir / OUT_DIR / "results.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        ci, u = r["validation"]["ci"], r["unseen_site_normals"]
        per = ci["per_class"]
        classes = list(per)
        if len(classes) == 2:
            spec, sens = _ci(per[classes[1]]["specificity"]), _ci(per[classes[1]]["sensitivity"])
        else:
            spec = _ci(per[classes[0]]["sensitivity"])
            sens = "per class: " + ", ".join(f"{c} {_ci(per[c]['sensitivity'])}" for c in classes[1:])
        unseen = f"{u['specificity']:.3f} ({u['specificity_ci_low']:.3f}–{u['specificity_ci_high']:.3f})"
        mean_p = (f"{u['mean_p_pneumonia']:.3f} ({u['mean_p_pneumonia_ci_low']:.3f}–"
                  f"{u['mean_p_pneumonia_ci_high']:.3f})")
        cells = [run_dir.name, _ci(ci["accuracy"]), _ci(ci["roc_auc"]), spec, sens, unseen, mean_p]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stress_table(run_dirs: list[Path]) -> str:
    """Markdown: per perturbation, each run's lowest accuracy / specificity over the severities measured."""
    paths = {d.name: d / OUT_DIR / "stress.csv" for d in run_dirs}
    frames = {name: pd.read_csv(path) for name, path in paths.items() if path.is_file()}
    if not frames:
        return ""
    order = list(dict.fromkeys(next(iter(frames.values()))["perturbation"]))
    header = "| perturbation | " + " | ".join(f"{name} acc | {name} spec" for name in frames) + " |"
    lines = [header, "|---|" + "---|---|" * len(frames)]
    for perturbation in order:
        cells = []
        for frame in frames.values():
            rows = frame.loc[frame["perturbation"].eq(perturbation)]
            cells += [f"{rows['accuracy'].min():.3f}", f"{rows['specificity'].min():.3f}"] if len(rows) else ["", ""]
        label = "(clean)" if perturbation == "none" else perturbation
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rank_table(run_dirs: list[Path]) -> pd.DataFrame:
    """The selection rule applied to the runs of each task: the rule's figures, eligibility, ranks, score, place."""
    frame = table(run_dirs)
    parts = [score_runs(rows.set_index("run"), task) for task, rows in frame.groupby("task", sort=False)]
    keep = ["task", "val_acc", "val_auc", *PROXIES, "eligible", *(f"rank_{c}" for c in PROXIES), "score", "place"]
    return pd.concat(parts)[keep].reset_index()


def write_docs(markdown: Path, run_dirs: list[Path], prefix: str = "") -> None:
    """Replace the RESULTS / CI / STRESS tables (and, with a prefix, RANK) between their BEGIN / END markers in
    ``markdown``; ``prefix`` selects another set of markers (``FULLSIZE_RESULTS_TABLE``, ...)."""
    text = markdown.read_text(encoding="utf-8")
    results = table(run_dirs).drop(columns=["val_sens_0.5", "stress_worst", "stress_worst_acc"])
    if not prefix:  # the reduced study's table, as it was published
        results = results.drop(columns=["train_img_s", *(f"stress_{k}_bal" for k in STRESS_KINDS)])
    results = results.rename(columns={"unseen_mean_p": "unseen_mean_p(pn.)", "res_mean_abs_dp": "res_\\|Δp\\|"})
    tables = {"RESULTS_TABLE": _markdown(results), "CI_TABLE": ci_table(run_dirs),
              "STRESS_TABLE": stress_table(run_dirs)}
    if prefix:
        tables["RANK_TABLE"] = _markdown(rank_table(run_dirs).rename(columns={"res_mean_abs_dp": "res_\\|Δp\\|"}))
    for key, body in tables.items():
        text = _between_markers(text, prefix + key, body, markdown)
    markdown.write_text(text, encoding="utf-8")


def _between_markers(text: str, name: str, body: str, markdown: Path) -> str:
    """``text`` with what lies between its ``BEGIN name`` / ``END name`` comments replaced by ``body``."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    if begin not in text or end not in text:
        raise SystemExit(f"{markdown} has no {begin} ... {end} markers")
    head, rest = text.split(begin, 1)
    return head + begin + "\n" + body + "\n" + end + rest.split(end, 1)[1]


def decision_table(run_dirs: list[Path]) -> tuple[pd.DataFrame, dict[str, tuple[str, str]]]:
    """The rule's third and fourth steps: the finalists' runs (and their variants, ensembles or TTA) as seed means
    per recipe, ranked. Per task: the recipe chosen between the finalists (``chosen``; variants are no recipe) and
    what is shipped (``shipped``: the same decision over the finalists and their variants)."""
    means = seed_means(table(run_dirs).set_index("run"))
    parts, decided = [], {}
    for task, rows in means.groupby("task", sort=False):
        scored = score_runs(rows, task)
        recipes = rows.loc[[name in _candidates() for name in rows.index]]
        decided[task] = (decide_between_finalists(recipes, task), decide_between_finalists(rows, task))
        scored["chosen"] = scored.index == decided[task][0]
        scored["shipped"] = scored.index == decided[task][1]
        parts.append(scored)
    keep = ["task", "seeds", "runs", "val_acc", "val_auc", *PROXIES, "eligible", *(f"rank_{c}" for c in PROXIES),
            "score", "place", "chosen", "shipped"]
    return pd.concat(parts)[keep].reset_index(), decided


RESULT_FILES = (f"{OUT_DIR}/results.json", f"{OUT_DIR}/stress.csv")
RECORD_FILES = ("config.yaml", "summary.json", "metrics.csv", *RESULT_FILES)


def record(run_dirs: list[Path], dest: Path) -> list[Path]:
    """Copy each evaluated run's small result files (``RECORD_FILES``; a variant's results only: its members are
    recorded beside it) to ``dest/<run name>/``, with this machine's folders written as ``<data>`` (the data root)
    and ``<runs>`` (the folder of the run folders)."""
    from pneumoscope.paths import data_root

    written = []
    for run_dir in run_dirs:
        target = dest / run_dir.name
        places = {str(run_dir.resolve().parent): "<runs>", str(data_root().resolve()): "<data>"}
        variant = not (run_dir / "config.yaml").exists() and (run_dir / RESULT_FILES[0]).is_file()
        for name in RESULT_FILES if variant else RECORD_FILES:
            source = run_dir / name
            if not source.is_file():
                raise SystemExit(f"{source} is missing: train and evaluate the run first")
            text = source.read_text(encoding="utf-8")
            for place, token in places.items():
                text = text.replace(place, token)
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_text(text, encoding="utf-8")
        written.append(target)
    return written


def _as_preset(name: str) -> str:
    """A study recipe's name, with the preset that is the same recipe (``framing`` is ``recommended``)."""
    from pneumoscope.training.presets import preset_names

    if name not in _candidates():  # "X but key=value": no preset is that recipe
        return f"`{name}`"
    levers = _recipe_levers(name)
    same = [p for p in preset_names() if p != name and _recipe_levers(p) == levers]
    return f"`{name}`" + (f" (the preset `{same[0]}`)" if same else "")


def _how_trained(config: dict[str, Any]) -> str:
    return (f"{config['model']['name']} ImageNet-pretrained, {config['data']['image_size']} px input, "
            f"{config['trainer']['epochs']} epochs, recipe {_as_preset(recipe(config))}, seed {config['seed']}")


def _training_note(run_dir: Path) -> str:
    """How the run (or each member of an ensemble folder, where the member runs are at hand) was trained."""
    summary = _summary(run_dir)
    if summary.get("model") != "ensemble":
        return f"Trained on CPU: {_how_trained(_config(run_dir))}."
    members = [Path(m) for m in summary.get("members", [])]
    described = [f"`{m.name}` ({_how_trained(_config(m))})" if (m / "config.yaml").is_file() else f"`{m.name}`"
                 for m in members]
    return (f"A mean-probability ensemble of {len(members)} runs trained on CPU on the same split: "
            f"{'; '.join(described)}. Its threshold was chosen on their validation split; predicting runs every "
            "member.")


def card_notes(run_dir: Path, extra: list[str] | None = None) -> list[str]:
    """Limitations specific to how this run was trained (read from its config and manifest), then ``extra``."""
    manifest = pd.read_csv(run_dir / "manifest.csv")
    counts = manifest["split"].value_counts()
    return [
        _training_note(run_dir),
        (f"Trained on the train part of a patient-grouped split of the Kermany train set ({int(counts.get('train', 0))} "
         f"images); the {int(counts.get('val', 0))} validation images chose the epoch, threshold and temperature and "
         "were not trained on. The official Kermany test split was not used."),
        ("Validation images come from the same hospital and period as the training images, so validation figures "
         "overstate performance elsewhere: a plain recipe lost ~0.25 of specificity on a later acquisition batch of the "
         "same hospital. Check the proxies above before trusting a figure."),
        *(extra or []),
    ]


def bundle(run_dir: Path, name: str, dest: Path | None, notes: list[str] | None = None) -> dict[str, Any]:
    """Install ``run_dir`` as bundled model ``name``, write its population and scope flag rates (``pneumoscope scope
    fit``, with the shipped applicability check) and measure the scope verdict on real X-rays."""
    from pneumoscope.inference import bundled
    from pneumoscope.inference.applicability_fit import fit_scope
    from pneumoscope.paths import data_root

    results = json.loads((run_dir / OUT_DIR / "results.json").read_text())
    folder = bundled.install_bundled(run_dir, name, dest_root=dest, evaluation=results, notes=card_notes(run_dir, notes))
    fit_scope([folder], [run_dir / "manifest.csv"], [data_root() / "covid19_radiography"],
              fullres=[data_root() / "chest_xray_fullres_sample"])
    predictor = load_predictor(folder)
    checks = {"fullres_sample": sorted((data_root() / "chest_xray_fullres_sample").rglob("*.jpeg")),
              "unseen_site_normals": sorted((data_root() / "covid19_radiography" / "Normal").glob("*.png"))}
    flags = {}
    for what, files in checks.items():
        rows = list(predictor.predict_files(files, batch_size=32))
        flags[what] = {"n": len(rows), "out_of_scope": int(sum(not r.get("in_scope", True) for r in rows)),
                       "errors": int(sum(bool(r.get("error")) for r in rows))}
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
    report = {"folder": str(folder), "files_bytes": sizes, "out_of_scope": flags}
    (run_dir / OUT_DIR / f"bundle-{name}.json").write_text(json.dumps(report, indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate")
    ev.add_argument("run_dirs", type=Path, nargs="+", help="one run, or several on the same split (an ensemble)")
    ev.add_argument("--tta", type=int, default=0, help="test-time augmentation views (0 = off)")
    ev.add_argument("--out", type=Path, help="where a variant's generalisation/ folder goes")
    ev.add_argument("--stress-n", type=int, default=200)
    ev.add_argument("--severities", type=int, nargs="+", default=[1, 3, 5])
    ev.add_argument("--progress", action="store_true")
    tb = sub.add_parser("table")
    tb.add_argument("run_dirs", type=Path, nargs="+")
    tb.add_argument("--csv", type=Path)
    tb.add_argument("--markdown", type=Path)
    dc = sub.add_parser("docs", help="rewrite the marked tables of a Markdown file (docs/GENERALISATION.md)")
    dc.add_argument("markdown", type=Path)
    dc.add_argument("run_dirs", type=Path, nargs="+")
    dc.add_argument("--prefix", default="", help="marker prefix, e.g. FULLSIZE_ for the full-size study's tables")
    rk = sub.add_parser("rank", help="the full-size study's selection rule")
    rk.add_argument("run_dirs", type=Path, nargs="+")
    rk.add_argument("--csv", type=Path)
    de = sub.add_parser("decide", help="the rule's third and fourth steps: the finalists' seed means, the recipe "
                                       "chosen and the model shipped")
    de.add_argument("run_dirs", type=Path, nargs="+")
    de.add_argument("--docs", type=Path, help="also write the table between this Markdown file's markers")
    de.add_argument("--prefix", default="", help="marker prefix of --docs (FULLSIZE_)")
    rc = sub.add_parser("record", help="copy evaluated runs' small result files into a folder kept in git")
    rc.add_argument("run_dirs", type=Path, nargs="+")
    rc.add_argument("--dest", type=Path, required=True)
    bd = sub.add_parser("bundle")
    bd.add_argument("run_dir", type=Path)
    bd.add_argument("name")
    bd.add_argument("--dest", type=Path)
    bd.add_argument("--note", action="append", help="a further line for the model card (e.g. an ensemble's "
                                                     "measured prediction speed); repeatable")
    args = parser.parse_args()
    if args.command == "docs":
        write_docs(args.markdown, args.run_dirs, args.prefix)
    elif args.command == "rank":
        ranked = rank_table(args.run_dirs)
        if args.csv:
            ranked.to_csv(args.csv, index=False)
        print(_markdown(ranked))
    elif args.command == "decide":
        ranked, decisions = decision_table(args.run_dirs)
        text = _markdown(ranked.rename(columns={"res_mean_abs_dp": "res_\\|Δp\\|"}))
        if args.docs:
            body = _between_markers(args.docs.read_text(encoding="utf-8"), args.prefix + "DECISION_TABLE", text,
                                    args.docs)
            args.docs.write_text(body, encoding="utf-8")
        print(text)
        for task, (recipe_name, shipped) in decisions.items():
            print(f"{task}: the rule chooses the recipe `{recipe_name}` and ships `{shipped}`")
    elif args.command == "record":
        for folder in record(args.run_dirs, args.dest):
            print(f"recorded {folder}")
    elif args.command == "bundle":
        print(json.dumps(bundle(args.run_dir, args.name, args.dest, args.note), indent=2))
    elif args.command == "evaluate":
        started = time.perf_counter()
        result = evaluate(args.run_dirs, args.stress_n, tuple(args.severities), args.progress, args.tta, args.out)
        print(json.dumps({k: result[k] for k in ("validation", "unseen_site_normals", "resolution_consistency",
                                                 "stress", "eval_seconds")}, indent=2, default=float))
        print(f"evaluated in {time.perf_counter() - started:.0f} s")
    else:
        frame = table(args.run_dirs)
        if args.csv:
            frame.to_csv(args.csv, index=False)
        text = _markdown(frame)
        if args.markdown:
            args.markdown.write_text(text + "\n")
        print(text)


if __name__ == "__main__":
    main()
