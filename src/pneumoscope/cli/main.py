"""Entry point of the ``pneumoscope`` command.

Each command group lives in its own module and imports heavy libraries inside the command functions, so that
``pneumoscope --help`` does not import torch.
"""

from __future__ import annotations

import os
import sys

# Before torch is imported (libgomp reads it once): idle OpenMP threads sleep instead of spinning. On shared cores
# (other processes; predict's decoding threads) spinning threads stall every parallel region; measured on 2 loaded
# cores: PyTorch single-image latency 945 -> 34 ms, batch 16 -> 41 images/s (docs/PERFORMANCE.md). A value the user
# set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from pneumoscope.errors import PneumoscopeError
from pneumoscope.version import __version__

app = typer.Typer(
    name="pneumoscope",
    help="Detect and classify pneumonia on chest X-rays: ingest, split, train, evaluate, explain, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pneumoscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Pneumoscope command line."""


def _register() -> None:
    from pneumoscope.cli import commands

    commands.register(app)


_register()


def main() -> None:
    """Run the CLI, turning user errors into one line on stderr and exit status 2."""
    try:
        app()
    except PneumoscopeError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
