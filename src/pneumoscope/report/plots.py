"""Report plots (matplotlib, object API with the Agg canvas: no pyplot state, no display needed).

Each function returns the PNG as bytes; nothing is written unless a path is passed explicitly.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.errors import DataError

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
TRAIN_COLOUR, VAL_COLOUR = "#1f77b4", "#ff7f0e"
DPI = 110
STYLE = {
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "axes.titleweight": "bold", "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
    "legend.frameon": False, "font.size": 9.5, "xtick.labelsize": 8.5, "ytick.labelsize": 8.5,
}


def _figure(width: float, height: float, rows: int = 1, cols: int = 1, **kw):
    """A figure and its axes (object API, Agg canvas) with the report style."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, **kw)
    return fig, axes


def figure_png(fig, dpi: int = DPI) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def write_png(png: bytes, out: str | Path) -> Path:
    """Write PNG bytes to ``out`` atomically (a temporary file beside it, then a rename)."""
    from pneumoscope.files import atomic_write_bytes

    return atomic_write_bytes(out, png)


def _styled(fn):
    """Run a plotting function under the report's rc style (fonts, grid, spines) for its artists too."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------------- training curves
@_styled
def plot_training_curves(metrics: Any, out: str | Path | None = None) -> bytes:
    """Loss and accuracy per epoch, train vs validation, from ``metrics.csv`` (a path or a DataFrame with
    ``epoch``, ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc`` and optionally ``stage``).

    A dashed line marks where a new training stage starts (e.g. unfreezing the backbone); the epoch with the
    lowest validation loss is marked. With ``out`` the PNG is also written there.
    """
    import pandas as pd

    frame = pd.read_csv(metrics) if isinstance(metrics, (str, Path)) else pd.DataFrame(metrics)
    if "epoch" not in frame.columns or frame.empty:
        raise DataError("the training metrics have no epochs.", path=metrics if isinstance(metrics, (str, Path))
                        else None, fix="train for at least one epoch (metrics.csv needs an 'epoch' column).")
    frame = frame.sort_values("epoch")
    fig, axes = _figure(10, 3.6, 1, 2)
    panels = ((axes[0, 0], "loss", "Loss"), (axes[0, 1], "acc", "Accuracy"))
    for ax, key, title in panels:
        for split, colour, label in (("train", TRAIN_COLOUR, "train"), ("val", VAL_COLOUR, "validation")):
            column = f"{split}_{key}"
            if column in frame.columns and frame[column].notna().any():
                rows = frame[frame[column].notna()]
                ax.plot(rows["epoch"], rows[column], "o-", color=colour, label=label, markersize=3.5, linewidth=1.6)
        if "stage" in frame.columns:
            for start in frame.loc[frame["stage"].diff().fillna(0) > 0, "epoch"]:
                ax.axvline(start - 0.5, color="grey", linestyle="--", linewidth=1)
        ax.set(xlabel="epoch", ylabel=title.lower(), title=title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if "val_loss" in frame.columns and frame["val_loss"].notna().any():
        best = frame.loc[frame["val_loss"].idxmin()]
        axes[0, 0].plot([best["epoch"]], [best["val_loss"]], marker="*", markersize=13, color=VAL_COLOUR,
                        markeredgecolor="black", linestyle="none", label="best (lowest val. loss)")
        axes[0, 0].legend()
    png = figure_png(fig)
    if out is not None:
        write_png(png, out)
    return png


# ---------------------------------------------------------------------------------------------- confusion matrix
def _draw_matrix(ax, values: np.ndarray, classes: Sequence[str], title: str, fmt: str) -> None:
    finite = np.nan_to_num(values.astype(np.float64), nan=0.0)
    vmax = 1.0 if fmt == "pct" else max(float(finite.max()), 1.0)
    ax.imshow(finite, cmap="Blues", vmin=0, vmax=vmax)
    ax.grid(False)
    for (i, j), value in np.ndenumerate(values):
        text = "–" if not np.isfinite(value) else (f"{value:.0%}" if fmt == "pct" else f"{int(value)}")
        ax.text(j, i, text, ha="center", va="center", fontsize=10,
                color="white" if np.isfinite(value) and value > 0.55 * vmax else "black")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=30, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for spine in ax.spines.values():
        spine.set_visible(False)


@_styled
def plot_confusion_matrix(matrix: Sequence[Sequence[float]], classes: Sequence[str]) -> bytes:
    """Counts and row-normalised confusion matrix side by side (rows: true class; a row without images: –)."""
    counts = np.asarray(matrix, dtype=np.float64)
    k = len(classes)
    if counts.shape != (k, k):
        raise DataError(f"confusion matrix has shape {counts.shape}, expected ({k}, {k}).",
                        fix="pass the matrix with one row and column per class.")
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = counts / counts.sum(axis=1, keepdims=True)
    side = 2.2 + 0.75 * k
    fig, axes = _figure(2 * side + 0.6, side, 1, 2)
    _draw_matrix(axes[0, 0], counts, classes, "Counts", "int")
    _draw_matrix(axes[0, 1], normalised, classes, "Normalised by true class", "pct")
    return figure_png(fig)


# ---------------------------------------------------------------------------------------------- ROC and PR
@_styled
def plot_roc_pr(y_true: Any, probs: Any, classes: Sequence[str]) -> bytes:
    """ROC and precision-recall curves, one-vs-rest per class (for two classes: the positive class only).

    Classes absent from the labels (or making up all of them) are left out: their curves are undefined.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    from pneumoscope.metrics.classification import as_labels, as_probabilities

    y = as_labels(y_true, classes)
    p = as_probabilities(probs, y.size, len(classes))
    fig, axes = _figure(10, 4.0, 1, 2)
    roc_ax, pr_ax = axes[0, 0], axes[0, 1]
    shown = [1] if len(classes) == 2 else range(len(classes))
    for k in shown:
        positive = y == k
        if positive.all() or not positive.any():
            continue
        colour = PALETTE[k % len(PALETTE)]
        fpr, tpr, _ = roc_curve(positive, p[:, k])
        roc_ax.plot(fpr, tpr, color=colour, linewidth=1.8,
                    label=f"{classes[k]} (AUC {roc_auc_score(positive, p[:, k]):.3f})")
        precision, recall, _ = precision_recall_curve(positive, p[:, k])
        pr_ax.step(recall, precision, where="post", color=colour, linewidth=1.8,
                   label=f"{classes[k]} (AP {average_precision_score(positive, p[:, k]):.3f})")
        pr_ax.axhline(positive.mean(), color=colour, linestyle=":", linewidth=1)
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    roc_ax.set(xlabel="false-positive rate (1 − specificity)", ylabel="true-positive rate (sensitivity)",
               title="ROC (one-vs-rest)", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    pr_ax.set(xlabel="recall (sensitivity)", ylabel="precision", title="Precision-recall (dotted: prevalence)",
              xlim=(-0.01, 1.01), ylim=(-0.01, 1.03))
    for ax in (roc_ax, pr_ax):
        ax.set_aspect("equal")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right" if ax is roc_ax else "best")
    return figure_png(fig)


# ---------------------------------------------------------------------------------------------- reliability
@_styled
def plot_reliability(curve: Mapping[str, Any], ece: float | None = None, title: str = "Reliability") -> bytes:
    """Reliability diagram from ``calibration.reliability_curve``: accuracy vs mean confidence per bin (bars),
    the diagonal of perfect calibration, and the number of images per bin below."""
    edges = np.asarray(curve["bin_edges"], dtype=np.float64)
    count = np.asarray(curve["count"], dtype=np.float64)
    accuracy = np.array([np.nan if a is None else a for a in curve["accuracy"]], dtype=np.float64)
    confidence = np.array([np.nan if c is None else c for c in curve["confidence"]], dtype=np.float64)
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig, axes = _figure(5.2, 5.4, 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top, bottom = axes[0, 0], axes[1, 0]
    filled = count > 0
    top.bar(centres[filled], accuracy[filled], width=width[filled] * 0.92, color="#1f77b4", alpha=0.85,
            edgecolor="white", label="accuracy")
    top.bar(centres[filled], confidence[filled] - accuracy[filled], bottom=accuracy[filled],
            width=width[filled] * 0.92, facecolor="none", hatch="///", edgecolor="#d62728", linewidth=1,
            label="gap to mean confidence")
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    label = f"{title} (ECE {ece:.3f})" if ece is not None else title
    top.set(ylabel="accuracy", title=label, xlim=(0, 1), ylim=(0, 1.02))
    top.legend(loc="upper left")
    bottom.bar(centres, count, width=width * 0.92, color="#7f7f7f")
    bottom.set(xlabel="confidence (largest class probability)", ylabel="images")
    return figure_png(fig)


# ---------------------------------------------------------------------------------------------- thumbnails
@_styled
def plot_thumbnails(images: Sequence[np.ndarray], captions: Sequence[str], columns: int = 6,
                    title: str | None = None, colour: bool = False) -> bytes:
    """A grid of grayscale thumbnails with a caption under each (e.g. the most confident errors).

    ``colour``: show RGB images (e.g. Grad-CAM overlays) in colour instead of averaging them to grey."""
    if len(images) != len(captions):
        raise DataError(f"got {len(images)} images and {len(captions)} captions.", fix="pass one caption each.")
    if not images:
        raise DataError("no images to show.", fix="pass at least one image.")
    columns = max(1, min(columns, len(images)))
    rows = int(np.ceil(len(images) / columns))
    fig, axes = _figure(1.9 * columns, 2.25 * rows, rows, columns)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, captions):
        array = np.asarray(image)
        if colour and array.ndim == 3 and array.shape[-1] in (3, 4):
            ax.imshow(array[..., :3])
            ax.set_title(caption, fontsize=7.5, fontweight="normal")
            continue
        if array.ndim == 3:
            array = array[..., :3].mean(axis=-1) if array.shape[-1] in (3, 4) else array[..., 0]
        ax.imshow(array, cmap="gray", vmin=0, vmax=255 if array.dtype == np.uint8 else 1.0)
        ax.set_title(caption, fontsize=7.5, fontweight="normal")
    if title:
        fig.suptitle(title, fontweight="bold")
    return figure_png(fig)


# ---------------------------------------------------------------------------------------------- filters / maps
def _first_conv(model):
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            return name, module
    from pneumoscope.errors import ModelError

    raise ModelError("the model has no 2-D convolution to show filters of.",
                     fix="use a convolutional network, or leave out the filters section.")


@_styled
def plot_filters(model, max_filters: int = 64) -> bytes:
    """The first convolution's filters (averaged over input channels), one tile each, as the research plotted."""
    name, conv = _first_conv(model)
    weights = conv.weight.detach().float().cpu().numpy().mean(axis=1)[:max_filters]
    columns = int(np.ceil(np.sqrt(len(weights))))
    rows = int(np.ceil(len(weights) / columns))
    fig, axes = _figure(0.75 * columns + 0.6, 0.75 * rows + 0.6, rows, columns)
    limit = float(np.abs(weights).max()) or 1.0
    for ax in axes.ravel():
        ax.axis("off")
    for ax, kernel in zip(axes.ravel(), weights):
        ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    fig.suptitle(f"First-layer filters ({name}, {conv.kernel_size[0]}×{conv.kernel_size[1]})", fontweight="bold")
    return figure_png(fig)


def _as_model_input(image: np.ndarray):
    import torch

    array = np.asarray(image)
    if array.ndim != 2:
        raise DataError(f"image has shape {array.shape}, expected a 2-D grayscale image.", fix="pass (H, W).")
    scaled = array.astype(np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
    return torch.from_numpy(scaled)[None, None]


@_styled
def plot_feature_maps(model, image: np.ndarray, layer: str | None = None, max_maps: int = 16) -> bytes:
    """The input image and the activations of one layer (default: the first convolution) for it.

    ``image``: 2-D grayscale (uint8, or float in [0, 1]) at the model's input size; the model takes
    ``(1, 1, H, W)`` in [0, 1] (the Pneumoscope model contract).
    """
    import torch

    if layer is None:
        layer, module = _first_conv(model)
    else:
        modules = dict(model.named_modules())
        if layer not in modules:
            from pneumoscope.errors import ModelError

            raise ModelError(f"the model has no layer {layer!r}.", fix="pass a name from model.named_modules().")
        module = modules[layer]
    captured: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda _m, _i, output: captured.setdefault("out", output))
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(_as_model_input(image))
    finally:
        handle.remove()
        model.train(was_training)
    maps = captured["out"][0].float().cpu().numpy()[:max_maps]
    columns = min(6, len(maps) + 1)
    rows = int(np.ceil((len(maps) + 1) / columns))
    fig, axes = _figure(1.7 * columns, 1.8 * rows + 0.4, rows, columns)
    for ax in axes.ravel():
        ax.axis("off")
    flat = axes.ravel()
    flat[0].imshow(np.asarray(image), cmap="gray")
    flat[0].set_title("input", fontsize=8)
    for i, (ax, fmap) in enumerate(zip(flat[1:], maps)):
        ax.imshow(fmap, cmap="viridis")
        ax.set_title(f"channel {i}", fontsize=8, fontweight="normal")
    fig.suptitle(f"Feature maps of {layer}", fontweight="bold")
    return figure_png(fig)


# ---------------------------------------------------------------------------------------------- stress test
@_styled
def plot_stress(results: Any, metrics: Sequence[str] = ("accuracy", "specificity")) -> bytes:
    """Bars per perturbation × severity for each metric (rows of ``robustness.stress.stress_test``), with the
    clean value (perturbation ``none``) as a dashed line."""
    import pandas as pd

    frame = pd.DataFrame(results)
    needed = {"perturbation", "severity", *metrics}
    if not needed <= set(frame.columns) or frame.empty:
        raise DataError(f"stress-test results need the columns {sorted(needed)}.",
                        fix="pass the table from robustness.stress.stress_test.")
    clean = frame[frame["perturbation"] == "none"]
    shifted = (frame[frame["perturbation"] != "none"]
               .groupby(["perturbation", "severity"], sort=False)[list(metrics)].mean().reset_index())
    names = list(dict.fromkeys(shifted["perturbation"]))
    severities = sorted(shifted["severity"].unique())
    width = 0.8 / max(len(severities), 1)
    fig, axes = _figure(max(7.0, 0.75 * len(names) + 2), 2.7 * len(metrics), len(metrics), 1, sharex=True)
    from matplotlib import colormaps

    colours = colormaps["Blues"](np.linspace(0.3, 0.95, max(len(severities), 1)))
    x = np.arange(len(names))
    for ax, metric in zip(axes[:, 0], metrics):
        for j, severity in enumerate(severities):
            rows = shifted[shifted["severity"] == severity].set_index("perturbation").reindex(names)
            ax.bar(x + (j - (len(severities) - 1) / 2) * width, rows[metric], width=width,
                   color=colours[j], label=f"severity {severity}")
        if not clean.empty and pd.notna(clean[metric].iloc[0]):
            value = float(clean[metric].iloc[0])
            ax.axhline(value, color="#d62728", linestyle="--", linewidth=1.2, label="clean images")
            ax.annotate(f"clean {value:.3f}", (1.0, value), xycoords=("axes fraction", "data"),
                        xytext=(-4, 3), textcoords="offset points", ha="right", fontsize=8, color="#d62728")
        ax.set(ylabel=metric.replace("_", " "), ylim=(0, 1.08))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(labels), fontsize=8)
    axes[-1, 0].set_xticks(x, names, rotation=30, ha="right")
    return figure_png(fig)
