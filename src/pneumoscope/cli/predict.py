"""``pneumoscope predict``, ``pneumoscope explain`` and ``pneumoscope export``."""

from __future__ import annotations

from pathlib import Path

import typer

PREDICT_HELP = """Classify chest X-rays: image files, DICOM files (also without extension) and folders (recursive).

MODEL is a run folder, a model.safetensors, an .onnx file or a bundled model name (default: the default bundled model).

Rows are written to --out (.csv, .jsonl, or .json = one array) as they are computed, one per file, with columns:

  path: the input file.
  label: predicted class (binary models: pneumonia when p_pneumonia >= threshold).
  p_<class>: probability of each class (temperature-scaled, sums to 1; the mean over the views with --tta).
  p_std_<class>: spread of that probability over the --tta views (only with --tta).
  threshold: operating threshold on p_pneumonia (binary models; empty otherwise).
  in_scope: false when the model does not apply to the input (do not trust its label).
  scope_reason: why not, e.g. adult, not_a_chest_xray, lateral, modality CT, multi-frame (empty when in scope;
    several are joined by "; "; docs/SCOPE.md says what each means).
  scope_checks: every check's result, "name=value ok|reason" joined by "; " (a JSON object in .json/.jsonl).
  error: why the file could not be read (the other columns are then empty).
"""


def split_model_and_inputs(args: list[str]) -> tuple[str, list[str]]:
    """The model reference and the inputs: the first argument is the model if it names one, else the default."""
    from pneumoscope.inference import bundled

    first = args[0]
    path = Path(first).expanduser()
    is_model = (
        (path.is_dir() and (path / bundled.META_FILE).is_file() and (path / bundled.WEIGHTS_FILE).is_file())
        or (path.is_file() and path.suffix.lower() in (".onnx", ".safetensors"))
        or (not path.exists() and bundled.is_bundled_name(first))
    )
    # A missing first argument that cannot be a file (no suffix) among several is a mistyped model name.
    looks_like_name = not path.exists() and len(args) > 1 and not path.suffix and "/" not in first
    if is_model or looks_like_name:
        return first, args[1:]
    return bundled.default_model_name(), args


def predict(
    args: list[str] = typer.Argument(..., metavar="[MODEL] INPUT...", help="Optional model, then files/folders."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", "-o", help="Results file: .csv, .jsonl or .json."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Images per forward pass."),
    tta: int = typer.Option(0, "--tta", min=0, help="Test-time views to average (0 = off, up to 10)."),
    task: str | None = typer.Option(None, "--task", help="Refuse a model trained for another task."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    workers: int = typer.Option(2, "--workers", min=1, help="Threads decoding images ahead of the model."),
    backend: str = typer.Option("auto", "--backend",
                                help="auto (onnxruntime when a model.onnx exported from the weights is beside them), "
                                     "pytorch or onnx."),
) -> None:
    from pneumoscope.api import load_model
    from pneumoscope.cli.common import console
    from pneumoscope.errors import DataError
    from pneumoscope.inference.tta import check_views

    check_views(tta)
    model_ref, inputs = split_model_and_inputs(args)
    if not inputs:
        raise DataError("no input given after the model.", fix="pass image files, DICOM files or folders.")
    model = load_model(model_ref, device=device, task=task, backend=backend)
    console.print(f"model {model.name} ({model.backend}), classes {', '.join(model.classes)}")
    counts = model.predict_to_file(inputs, out, batch_size=batch_size, tta=tta, workers=workers)
    if counts.images == counts.errors:
        if counts.images == 1:  # the reason and its fix, as the decoder gave them
            raise DataError(counts.first_error)
        raise DataError(f"none of the {counts.images} files could be read (each reason is in the error column of "
                        f"{out}); the first: {counts.first_error}")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.labels.items()))
    console.print(f"{counts.images} files: {summary}; {counts.out_of_scope} out of the model's scope (see "
                  f"scope_reason); {counts.errors} unreadable → {out}")
    if counts.errors:
        console.print(f"{counts.errors} file(s) could not be read: see the error column of {out}; the first: "
                      f"{counts.first_error}", style="yellow", highlight=False, markup=False, soft_wrap=True)


def explain(
    args: list[str] = typer.Argument(..., metavar="[MODEL] IMAGE...", help="Optional model, then image files."),
    method: str = typer.Option("gradcam", "--method", help="gradcam or gradcam++."),
    target_class: str | None = typer.Option(None, "--class", help="Class to explain (default: the predicted one)."),
    out: Path = typer.Option(Path("explanations"), "--out", "-o", help="Folder for the PNGs and explanations.json."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """Grad-CAM / Grad-CAM++ heatmaps: <image>_<method>_<class>_overlay.png and _heatmap.png per image."""
    import json

    from pneumoscope.api import load_model
    from pneumoscope.cli.common import console, track
    from pneumoscope.errors import ConfigError, DataError, PneumoscopeError
    from pneumoscope.inference.explain import METHODS
    from pneumoscope.inference.sources import iter_image_files

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}.", fix=f"use one of: {', '.join(METHODS)}.")
    model_ref, inputs = split_model_and_inputs(args)
    if not inputs:
        raise DataError("no image given after the model.", fix="pass one or more image files.")
    model = load_model(model_ref, device=device)
    summary, failures = [], 0
    files = list(iter_image_files(inputs))
    for path in track(files, "explain"):
        try:
            result = model.explain(path, method=method, target_class=target_class)
        except PneumoscopeError as error:
            if target_class is not None and "unknown class" in str(error):
                raise
            failures += 1
            summary.append({"path": str(path), "error": str(error)})
            continue
        written = result.save(out, path.stem)
        summary.append({"path": str(path), "label": result.label, "target_class": result.target_class,
                        "probabilities": result.probabilities, "in_scope": result.in_scope,
                        "scope_reason": result.scope_reason,
                        **{k: str(v) for k, v in written.items()}})
    out.mkdir(parents=True, exist_ok=True)
    (out / "explanations.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    console.print(f"{len(files) - failures} heatmap(s) → {out}" + (f"; {failures} unreadable" if failures else ""))
    if failures == len(files):
        raise DataError("no image could be explained; see explanations.json.", path=out)


def export(
    model: str = typer.Argument(..., metavar="RUN_DIR", help="Run folder, model.safetensors or bundled model name."),
    format: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: RUN_DIR/model.onnx)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
) -> None:
    """Export a trained model to ONNX (dynamic batch, metadata inside — its training population too, for the scope
    verdict — checked, parity-tested against PyTorch)."""
    from pneumoscope.api import export_onnx
    from pneumoscope.cli.common import console
    from pneumoscope.errors import ConfigError
    from pneumoscope.inference.export import FORMATS

    if format not in FORMATS:
        raise ConfigError(f"unsupported export format {format!r}.", fix=f"use one of: {', '.join(FORMATS)}.")
    result = export_onnx(model, out, opset=opset)
    console.print(f"exported {result.path} ({result.size_bytes / 1e6:.1f} MB, outputs {', '.join(result.outputs)}); "
                  f"max |p_onnx - p_torch| = {result.max_abs_prob_diff:.1e}")


def register(app: typer.Typer) -> None:
    """Add ``predict``, ``explain`` and ``export``."""
    app.command("predict", help=PREDICT_HELP)(predict)
    app.command("explain")(explain)
    app.command("export")(export)
