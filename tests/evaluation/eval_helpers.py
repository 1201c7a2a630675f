"""Helpers of the evaluation tests: CSV data sets and CLI runners (tiny runs: ``tiny_runs``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pneumoscope.cli.main import app


def write_csv_data(path: Path, rows: list[tuple[Path, str]]) -> Path:
    """A CSV data set ``path,label`` (one patient per image)."""
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows), encoding="utf-8")
    return path


def invoke(*args: Any) -> str:
    """Run the CLI in-process; fail with its output unless it exits 0."""
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def cli_error(monkeypatch, capsys, *args: Any) -> str:
    """Run ``pneumoscope.cli.main.main`` (as the console script does); assert exit status 2; return stderr."""
    from pneumoscope.cli.main import main

    monkeypatch.setattr(sys, "argv", ["pneumoscope", *[str(a) for a in args]])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ")
    return err
