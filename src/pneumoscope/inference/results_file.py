"""Predicting files into a results table: the columns and rows of a prediction (what ``pneumoscope predict`` writes
and ``pneumoscope.api.Model.predict`` returns), and the streaming writer of CSV, JSON Lines or JSON files."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.inference.predictor import Predictor
from pneumoscope.inference.sources import count_image_files, iter_image_files
from pneumoscope.inference.tta import check_views

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json"}


def prediction_columns(classes: Sequence[str], tta: int = 0) -> list[str]:
    """The columns of a prediction table: path, label, a probability per class (and its spread over the TTA
    views), the threshold, the scope verdict and the error of a file that could not be read."""
    columns = ["path", "label", *[f"p_{c}" for c in classes]]
    if tta:
        columns += [f"p_std_{c}" for c in classes]
    return columns + ["threshold", "in_scope", "scope_reason", "scope_checks", "error"]


def prediction_row(result: dict[str, Any], classes: Sequence[str], tta: int = 0) -> dict[str, Any]:
    """One flat row of ``prediction_columns`` from a predictor result (with ``path`` and ``error``)."""
    row: dict[str, Any] = dict.fromkeys(prediction_columns(classes, tta))
    row.update(path=result.get("path"), error=result.get("error") or None)
    if "label" in result:
        row.update(label=result["label"], threshold=result["threshold"], in_scope=result["in_scope"],
                   scope_reason=result["scope_reason"] or None, scope_checks=result["scope_checks"])
        for name in classes:
            row[f"p_{name}"] = round(result["probabilities"][name], 6)
            if tta:
                row[f"p_std_{name}"] = round(result["p_std"][name], 6)
    return row


def iter_prediction_rows(predictor: Predictor, inputs: Iterable[str | Path], *, tta: int = 0, batch_size: int = 32,
                         workers: int = 2) -> Iterator[dict[str, Any]]:
    """Rows for the files of ``inputs`` (folders walked recursively, lazily), in order, a batch at a time."""
    check_views(tta)
    files = (path for item in inputs for path in iter_image_files([item]))
    for result in predictor.predict_files(files, batch_size=batch_size, tta=tta, workers=workers):
        yield prediction_row(result, predictor.classes, tta)


class ResultWriter:
    """Writes prediction rows to CSV, JSON Lines or a JSON array as they come (the format from the suffix)."""

    def __init__(self, out: Path, columns: list[str]):
        self.format = FORMATS.get(out.suffix.lower())
        if self.format is None:
            raise ConfigError("unsupported results format.", path=out, fix="use a .csv, .jsonl or .json file name.")
        self.columns = columns
        out.parent.mkdir(parents=True, exist_ok=True)
        self.handle: IO[str] = open(out, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.count = 0
        if self.format == "csv":
            self.csv = csv.DictWriter(self.handle, fieldnames=self.columns)
            self.csv.writeheader()
        elif self.format == "json":
            self.handle.write("[")

    def write(self, row: dict[str, Any]) -> None:
        flat = {column: row.get(column) for column in self.columns}
        if self.format == "csv":
            flat["scope_checks"] = format_checks(flat.get("scope_checks"))
            self.csv.writerow({k: "" if v is None else v for k, v in flat.items()})
        else:
            text = json.dumps(flat)
            if self.format == "json":
                text = ("\n" if self.count == 0 else ",\n") + text
            else:
                text += "\n"
            self.handle.write(text)
        self.count += 1

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        if self.format == "json":
            self.handle.write("\n]\n")
        self.handle.close()


def format_checks(checks: dict[str, Any] | None) -> str | None:
    """A row's ``scope_checks`` as one CSV cell: ``name=value ok|reason`` joined by ``; ``."""
    if not checks:
        return None
    return "; ".join(f"{name}={check['value']} {'ok' if check['ok'] else check['reason']}"
                     for name, check in checks.items())


@dataclass
class PredictionCounts:
    """What a prediction run wrote: files, unreadable ones (and the first reason), those out of the model's scope,
    labels."""

    images: int = 0
    errors: int = 0
    out_of_scope: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    first_error: str = ""

    def add(self, row: dict[str, Any]) -> None:
        self.images += 1
        if row["error"]:
            self.errors += 1
            self.first_error = self.first_error or row["error"]
        else:
            self.labels[row["label"]] += 1
            self.out_of_scope += not row["in_scope"]


def predict_to_file(predictor: Predictor, inputs: Sequence[str | Path], out: Path, *, batch_size: int = 32,
                    tta: int = 0, workers: int = 2, progress: bool = True) -> PredictionCounts:
    """Predict on every file of ``inputs``, streaming rows into ``out`` (flushed every batch, so that an interrupted
    run keeps what it computed); DataError when ``inputs`` hold no image file."""
    from pneumoscope.progress import progress_bar

    total = count_image_files(inputs)
    if total == 0:
        raise DataError(f"no image files found in {', '.join(str(i) for i in inputs)}.",
                        fix="pass image files (JPEG, PNG, DICOM...) or folders that contain them.")
    writer = ResultWriter(Path(out), prediction_columns(predictor.classes, tta))
    counts = PredictionCounts()
    try:
        with progress_bar() as bar:
            task = bar.add_task("predict", total=total, visible=progress)
            for row in iter_prediction_rows(predictor, inputs, tta=tta, batch_size=batch_size, workers=workers):
                writer.write(row)
                counts.add(row)
                bar.advance(task)
                if writer.count % batch_size == 0:
                    writer.flush()
    finally:
        writer.close()
    return counts
