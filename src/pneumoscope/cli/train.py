"""``pneumoscope train``: train a classifier into a run folder, or continue one with ``--resume``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

_RESUME_ALLOWS = {"device", "num_workers"}


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)


def _overrides(flags: dict[str, Any], settings: list[str]) -> dict[str, Any]:
    """Config overrides from the flags that were given (None = not given) and ``--set KEY=VALUE`` pairs."""
    from pneumoscope.training.config import deep_merge, parse_override

    where = {
        "data": ("data", "paths"), "task": ("task",), "model": ("model", "name"), "pretrained": ("model", "pretrained"),
        "weights": ("model", "weights"), "image_size": ("data", "image_size"), "epochs": ("trainer", "epochs"),
        "batch_size": ("trainer", "batch_size"), "lr": ("optim", "lr"), "optimizer": ("optim", "optimizer"),
        "seed": ("seed",), "max_images": ("data", "max_images"), "device": ("trainer", "device"),
        "num_workers": ("data", "num_workers"),
    }
    values: dict[str, Any] = {}
    for name, value in flags.items():
        if value is None or (isinstance(value, list) and not value):
            continue
        *parents, key = where[name]
        cursor = values
        for parent in parents:
            cursor = cursor.setdefault(parent, {})
        cursor[key] = value
    for setting in settings:
        values = deep_merge(values, parse_override(setting))
    return values


def _workers(text: str | None) -> int | str | None:
    if text is None or text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        from pneumoscope.errors import ConfigError

        raise ConfigError(f"--num-workers must be 'auto' or a number, got {text!r}.", fix="e.g. --num-workers 4")


def _print_epoch(total_epochs: int):
    from pneumoscope.cli.common import console

    def show(row: dict[str, Any], trainer: Any) -> None:
        remaining = max(0, total_epochs - row["epoch"])
        eta = remaining * row["seconds"]
        console.print(
            f"epoch {row['epoch']}/{total_epochs} stage {row['stage']} | "
            f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f} | lr {row['lr']:.1e} | "
            f"{row['seconds']:.1f} s, {row['images_per_second']:.0f} img/s | ETA {eta / 60:.1f} min",
            soft_wrap=True,
            highlight=False,
        )

    return show


def _print_summary(run_dir: Path) -> None:
    import json

    from rich.table import Table

    from pneumoscope.cli.common import out

    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        return
    summary = json.loads(summary_path.read_text())
    table = Table(title=f"Validation ({summary['task']}, {summary['model']}, best epoch {summary['best_epoch']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in summary["val_metrics"].items():
        if isinstance(value, dict):
            for cls, v in value.items():
                table.add_row(f"{key} {cls}", f"{v:.4f}")
        elif isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
        else:
            table.add_row(key, str(value))
    if summary.get("threshold") is not None:
        table.add_row(f"threshold ({summary['threshold_method']})", f"{summary['threshold']:.4f}")
    table.add_row("temperature", f"{summary['temperature']:.3f}")
    table.add_row("wall time (s)", f"{summary['wall_seconds']:.1f}")
    if summary.get("resumed") and summary.get("train_seconds") is not None:
        table.add_row("epochs' time, every segment (s)", f"{summary['train_seconds']:.1f}")
    if summary.get("mean_epoch_seconds") is not None:
        table.add_row("mean epoch (s)", f"{summary['mean_epoch_seconds']:.1f}")
        table.add_row("train images/s", f"{summary['mean_images_per_second']:.1f}")
    out.print(table)
    out.print(f"run folder: {run_dir.resolve()}")
    _print_tracking(run_dir)


def _print_tracking(run_dir: Path) -> None:
    """Where a tracked run is logged."""
    from pneumoscope.cli.common import out
    from pneumoscope.training.tracking import read_tracking

    record = read_tracking(run_dir)
    if record.get("mlflow"):
        mlflow = record["mlflow"]
        out.print(f"MLflow run {mlflow['run_id']} (experiment {mlflow['experiment']}) at {mlflow['tracking_uri']}",
                  highlight=False, soft_wrap=True)
    if record.get("tensorboard"):
        out.print(f"TensorBoard: tensorboard --logdir {(run_dir / record['tensorboard']).resolve()}", highlight=False,
                  soft_wrap=True)


def _is_rank_zero() -> bool:
    """False in the extra processes of a torchrun launch (they train, but do not report)."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def train_command(
    data: list[Path] = typer.Option(None, "--data", help="Data set folder or manifest; repeat for several."),
    task: str = typer.Option(None, "--task", help="binary, 3class or 4class."),
    model: str = typer.Option(None, "--model", help="Registry name, e.g. efficientnet_lite0, resnet18, simple_cnn."),
    pretrained: bool = typer.Option(None, "--pretrained/--no-pretrained", help="ImageNet-pretrained backbone."),
    weights: Path = typer.Option(None, "--weights", help="Local pretrained-weights file for the backbone."),
    preset: str = typer.Option(None, "--preset", help="Recipe: recommended (default), standardised, plain or strong."),
    config: Path = typer.Option(None, "--config", help="YAML config (applied over the preset)."),
    image_size: int = typer.Option(None, "--image-size", help="Side of the square input, pixels."),
    epochs: int = typer.Option(None, "--epochs"),
    batch_size: int = typer.Option(None, "--batch-size"),
    lr: float = typer.Option(None, "--lr", help="Learning rate."),
    optimizer: str = typer.Option(None, "--optimizer", help="sgd, adam, adamw or adagrad."),
    seed: int = typer.Option(None, "--seed"),
    out: Path = typer.Option(None, "--out", help="Run folder to create (default runs/<time>-<task>-<model>)."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in this folder from its last epoch."),
    max_images: int = typer.Option(None, "--max-images", help="Patient-grouped subsample, for quick runs."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda."),
    num_workers: str = typer.Option(None, "--num-workers", help="Data-loader processes, or auto."),
    settings: list[str] = typer.Option(None, "--set", help="Any config key, e.g. --set augment.rotation=10."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars (log-friendly)."),
) -> None:
    """Train a classifier; writes the run folder (config, manifest, metrics, best model, curves)."""
    from pneumoscope.errors import ConfigError

    flags = {"data": [str(p) for p in data] if data else None, "task": task, "model": model,
             "pretrained": pretrained, "weights": str(weights) if weights else None, "image_size": image_size,
             "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "seed": seed,
             "max_images": max_images, "device": device, "num_workers": _workers(num_workers)}
    if resume is not None:
        from pneumoscope.api import resume as resume_run

        given = sorted(k for k, v in flags.items() if v is not None and k not in _RESUME_ALLOWS)
        if given or preset or config or settings or out:
            extra = [f"--{k.replace('_', '-')}" for k in given] + [n for n, v in
                     (("--preset", preset), ("--config", config), ("--set", settings), ("--out", out)) if v]
            raise ConfigError(f"--resume continues the run with its saved config; {', '.join(extra)} cannot change it.",
                              fix="drop those options (only --device and --num-workers may change on resume).")
        from pneumoscope.training.config import load_run_config

        total = load_run_config(resume).trainer.epochs
        run_dir = resume_run(resume, device=device, num_workers=flags["num_workers"], progress=not no_progress,
                             on_epoch=_print_epoch(total))
    else:
        from pneumoscope.api import make_config, train
        from pneumoscope.cli.common import console
        from pneumoscope.progress import status_line
        from pneumoscope.training.config import override_notes

        overrides = _overrides(flags, settings or [])
        if _is_rank_zero():
            for note in override_notes(config, overrides, preset):
                status_line(note)
        resolved = make_config(config, preset=preset, overrides=overrides)
        if _is_rank_zero():
            console.print(f"training {resolved.model.name} ({resolved.task}, preset {resolved.preset}, "
                          f"{resolved.data.image_size} px, {resolved.trainer.epochs} epochs)", highlight=False)
        run_dir = train(resolved, out, progress=not no_progress, on_epoch=_print_epoch(resolved.trainer.epochs))
    if _is_rank_zero():
        _print_summary(run_dir)
