"""Evidence for the applicability check (docs/SCOPE.md): does it read anatomy or the archive, and what does it cost?

    python benchmarks/applicability_study.py cross-source --manifest M [--manifest M...] [--only FOLDER] [--out DIR]
    python benchmarks/applicability_study.py trivial-stats --manifest M [--manifest M...] [--out DIR]
    python benchmarks/applicability_study.py occlusion --manifest M [--manifest M...] [--per-group 40] [--out DIR]
    python benchmarks/applicability_study.py cost [--batch 32] [--repeat 30] [--out DIR]

The manifests are those of the models the check serves (their val patients are held out, as in ``pneumoscope scope
fit``); the adults are ``$PNEUMOSCOPE_DATA/covid19_radiography`` and the full-resolution originals
``$PNEUMOSCOPE_DATA/chest_xray_fullres_sample``.

- ``cross-source``: the check fitted (same recipe and split as the shipped one) with the adults of one folder of
  the COVID-19 Radiography Database only, then measured on the other folder, none of which it saw: COVID → Normal
  and Normal → COVID. Each fit is about 15 minutes of one core (the fitting views come from the cache of a
  previous ``scope fit --retrain``).
- ``trivial-stats``: how well a logistic regression on trivial properties of the file (byte size, width, height,
  JPEG or PNG, channels; then also mean and standard deviation of the pixels) tells the held-out children from the
  held-out adults, as the archives store them and after one random re-encoding (5-fold cross-validated ROC AUC),
  beside the shipped check's ROC AUC on the same re-encoded images.
- ``occlusion``: occlusion sensitivity of the shipped check's adult logit (a 16-px patch of the image's mean grey
  slid in 8-px steps over the 96-px input) on held-out children and adults: mean maps per group, the share of the
  effect in the image's outer ring (where archives print markers and text) and in the central band; writes a PNG of
  heatmaps only (no image pixels) to ``--figure``.
- ``cost``: the check's added time per image at batch ``--batch`` (its onnxruntime pass, and the 128 → 96 px
  resize; the 128-px thumbnail is computed for the image statistics anyway), beside the default model's own pass.

Each command prints a Markdown table and writes ``DIR/<command>.json`` (default DIR: runs/applicability-study).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.data.imaging import load_image
from pneumoscope.data.populations import SOURCE_POPULATIONS
from pneumoscope.data.reencode import reencode
from pneumoscope.inference.applicability_fit import (
    FitSettings,
    Image,
    check_input,
    measure,
    read_manifests,
    split_images,
    train_check,
    view_rng,
)
from pneumoscope.inference.applicability_runtime import load_runner
from pneumoscope.inference.sources import load_input
from pneumoscope.models.applicability import shipped_check_path
from pneumoscope.paths import data_root

PEDIATRIC = SOURCE_POPULATIONS["kermany"]


def adult_folder(image: Image) -> str:
    return Path(image.path).parent.name


def cross_source(manifests: list[Path], settings: FitSettings, only: str | None = None) -> dict[str, Any]:
    """Fit on the children and one adult folder (each in turn, or ``only`` that one), measure on the other folder
    (never seen) and held-out children."""
    other = [data_root() / "covid19_radiography"]
    split = split_images(read_manifests(manifests), other, settings)
    children = [i.path for i in split.measure if not i.adult]
    folders = sorted({adult_folder(i) for i in split.fit if i.adult})
    results = {}
    for fitted in [only] if only else folders:
        started = time.perf_counter()
        check = train_check(manifests, other, settings, progress=True, measured=False,
                            select=lambda image, f=fitted: not image.adult or adult_folder(image) == f)
        unseen = sorted(str(p) for held in folders if held != fitted for p in (other[0] / held).glob("*.png"))
        sets = {"children, validation patients not fitted on": children,
                "adults of the other folder, never fitted on": unseen}
        results[f"fitted on {fitted}"] = {"thresholds": check.measured["thresholds"],
                                          "flag_rates": measure(check, PEDIATRIC, sets, seed=settings.seed,
                                                                negatives_per_kind=0),
                                          "seconds": round(time.perf_counter() - started)}
    return results


def file_properties(path: str, seed: int) -> tuple[list[float], list[float]]:
    """Trivial properties of the file as stored, and of one random re-encoding of it: bytes, width, height, JPEG,
    channels, pixel mean, pixel standard deviation."""
    from PIL import Image as PILImage

    stored = Path(path)
    with PILImage.open(stored) as image:
        width, height = image.size
        channels = len(image.getbands())
        is_jpeg = float(image.format == "JPEG")
    gray = load_image(stored)
    as_is = [stored.stat().st_size, width, height, is_jpeg, channels, float(gray.mean()), float(gray.std())]
    encoded = reencode(gray, view_rng(path, seed + 2000, 0))
    with PILImage.open(io.BytesIO(encoded.data)) as image:
        channels = len(image.getbands())
    again = [len(encoded.data), encoded.gray.shape[1], encoded.gray.shape[0], float(encoded.format == "jpeg"),
             channels, float(encoded.gray.mean()), float(encoded.gray.std())]
    return as_is, again


def trivial_stats(manifests: list[Path], settings: FitSettings) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    split = split_images(read_manifests(manifests), [data_root() / "covid19_radiography"], settings)
    images = split.measure
    labels = np.array([i.adult for i in images])
    stored, reencoded = zip(*(file_properties(i.path, settings.seed) for i in images), strict=True)
    sets = {"format (bytes, width, height, JPEG, channels)": slice(0, 5),
            "format + pixel mean and standard deviation": slice(0, 7)}
    folds = StratifiedKFold(5, shuffle=True, random_state=settings.seed)
    results: dict[str, Any] = {"children": int((labels == 0).sum()), "adults": int((labels == 1).sum())}
    for version, table in (("as stored", np.array(stored)), ("re-encoded", np.array(reencoded))):
        for name, columns in sets.items():
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            scores = cross_val_predict(model, table[:, columns], labels, cv=folds, method="predict_proba")[:, 1]
            results[f"{version}: {name}"] = round(float(roc_auc_score(labels, scores)), 4)
    runner = load_runner(shipped_check_path())
    inputs = np.stack([check_input(reencode(load_image(i.path), view_rng(i.path, settings.seed + 2000, 0)).gray,
                                   runner.input_size)[0] for i in images])
    logits = np.concatenate([runner.outputs(inputs[s:s + 64])[1] for s in range(0, len(inputs), 64)])
    results["re-encoded: the applicability check's p_adult"] = round(float(roc_auc_score(labels, logits)), 4)
    return results


def occlusion(manifests: list[Path], settings: FitSettings, per_group: int, figure: Path | None) -> dict[str, Any]:
    runner = load_runner(shipped_check_path())
    size, patch, step = runner.input_size, 16, 8
    split = split_images(read_manifests(manifests), [data_root() / "covid19_radiography"], settings)
    rng = np.random.default_rng(settings.seed)
    cells = (size - patch) // step + 1
    results: dict[str, Any] = {"patch_px": patch, "step_px": step, "input_px": size}
    maps = {}
    for adult, group in ((0, "children"), (1, "adults")):
        members = [i for i in split.measure if i.adult == adult]
        chosen = [members[k] for k in sorted(rng.choice(len(members), min(per_group, len(members)), replace=False))]
        group_maps = []
        for image in chosen:
            x = check_input(load_input(image.path).gray, size)[0]
            occluded = [x]
            for row in range(cells):
                for col in range(cells):
                    copy = x.copy()
                    copy[row * step:row * step + patch, col * step:col * step + patch] = x.mean()
                    occluded.append(copy)
            logits = runner.outputs(np.stack(occluded))[1]
            group_maps.append((logits[0] - logits[1:]).reshape(cells, cells))  # > 0: the region says "adult"
        stack = np.stack(group_maps)
        maps[group] = stack
        effect = np.abs(stack).mean(axis=0)
        ring = np.ones((cells, cells), bool)
        ring[1:-1, 1:-1] = False
        central = np.zeros((cells, cells), bool)
        central[2:-2, 2:-2] = True
        results[group] = {"n": len(chosen), "share_of_effect_outer_ring": round(float(effect[ring].sum() / effect.sum()), 3),
                          "outer_ring_share_of_area": round(float(ring.mean()), 3),
                          "share_of_effect_central": round(float(effect[central].sum() / effect.sum()), 3),
                          "central_share_of_area": round(float(central.mean()), 3),
                          "mean_map": np.round(stack.mean(axis=0), 3).tolist()}
    if figure is not None:
        write_heatmaps(maps, figure)
        results["figure"] = str(figure)
    return results


def write_heatmaps(maps: dict[str, np.ndarray], figure: Path) -> None:
    """A small PNG: the mean occlusion map of each group and four individual maps per group (heatmaps only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 5, figsize=(7.5, 3.3), dpi=80)
    limit = max(float(np.abs(m).max()) for m in maps.values())
    for row, (group, stack) in enumerate(maps.items()):
        panels = [("mean", stack.mean(axis=0))] + [(f"#{k + 1}", stack[k]) for k in range(min(4, len(stack)))]
        for col, (title, values) in enumerate(panels):
            ax = axes[row, col]
            scale = limit if title != "mean" else float(np.abs(values).max()) or 1.0
            ax.imshow(values, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
            ax.set_title(f"{group} {title}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Occlusion: drop in the adult logit when a region is hidden (red: region says adult)", fontsize=8)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure)
    plt.close(fig)


def cost(batch: int, repeat: int) -> dict[str, Any]:
    """Per-image time of the check at ``batch`` (onnxruntime pass; 128 → 96 px resize) and of the default model."""
    from pneumoscope.data import image_stats
    from pneumoscope.inference.loading import load_predictor
    from pneumoscope.models.applicability import applicability_input

    runner = load_runner(shipped_check_path())
    files = sorted((data_root() / "chest_xray_fullres_sample").rglob("*.jpeg"))[:batch]
    thumbs = [image_stats.downsample(load_input(p).gray) for p in files]
    while len(thumbs) < batch:
        thumbs += thumbs[: batch - len(thumbs)]

    def timed(work: Any) -> float:
        work()
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000 / batch

    inputs = np.stack([applicability_input(t, runner.input_size) for t in thumbs])
    model = load_predictor("kermany-binary", applicability=None)
    prepared = np.stack([model.prepare(t) for t in thumbs])
    return {
        "batch": batch, "repeat": repeat, "backend": runner.backend,
        "check_onnxruntime_ms_per_image": round(timed(lambda: runner.outputs(inputs)), 3),
        "resize_128_to_96_ms_per_image": round(timed(lambda: [applicability_input(t, runner.input_size)
                                                               for t in thumbs]), 3),
        "default_model_ms_per_image": round(timed(lambda: model._logits_and_features(prepared, False)), 3),
        "model_backend": model.backend,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = ["| | |", "|---|---|"]
    for key, value in result.items():
        if isinstance(value, dict) and "flag_rates" in value:
            for name, rate in value["flag_rates"].items():
                lines.append(f"| {key}: {name} | {rate['flagged']} / {rate['n']} ({rate['flag_rate']:.1%}) |")
        elif isinstance(value, dict):
            lines.append(f"| {key} | {json.dumps({k: v for k, v in value.items() if k != 'mean_map'})} |")
        else:
            lines.append(f"| {key} | {value} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["cross-source", "trivial-stats", "occlusion", "cost"])
    parser.add_argument("--manifest", type=Path, action="append", default=[])
    parser.add_argument("--only", help="cross-source: fit on this adult folder only (COVID or Normal)")
    parser.add_argument("--per-group", type=int, default=40)
    parser.add_argument("--figure", type=Path, default=Path("docs/scope-occlusion.png"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/applicability-study"))
    args = parser.parse_args()
    settings = FitSettings(seed=args.seed)
    if args.command != "cost" and not args.manifest:
        parser.error("pass --manifest for each model the check serves")
    started = time.perf_counter()
    if args.command == "cross-source":
        result = cross_source(args.manifest, settings, args.only)
    elif args.command == "trivial-stats":
        result = trivial_stats(args.manifest, settings)
    elif args.command == "occlusion":
        result = occlusion(args.manifest, settings, args.per_group, args.figure)
    else:
        result = cost(args.batch, args.repeat)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.command + (f"-{args.only}" if args.command == "cross-source" and args.only else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
