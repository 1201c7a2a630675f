"""Collects the command modules of this package: each defines ``register(app)`` and adds its commands.

Command modules must not import heavy libraries at module level (``pneumoscope --help`` stays fast).
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

_NOT_COMMANDS = {"main", "commands", "common"}


def register(app: typer.Typer) -> None:
    """Import every command module of ``pneumoscope.cli`` and let it register its commands on ``app``."""
    import pneumoscope.cli as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name in _NOT_COMMANDS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"pneumoscope.cli.{info.name}")
        module.register(app)
