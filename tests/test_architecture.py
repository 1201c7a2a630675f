"""The layer contract of docs/ARCHITECTURE.md, checked on every import statement, those inside functions included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layers_and_acyclic_packages_hold():
    command = [str(Path(sys.executable).with_name("lint-imports")), str(ROOT / "pyproject.toml"),
               "--no-cache"]
    result = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_the_graph_the_contract_reads_includes_imports_inside_functions():
    import grimp

    graph = grimp.build_graph("pneumoscope", cache_dir=None)
    # training.finish.write_curves imports the report's plot only when it draws (a function-level import)
    details = graph.get_import_details(importer="pneumoscope.training.finish", imported="pneumoscope.report.plots")
    assert details and all(d["line_contents"].startswith("from pneumoscope.report.plots") for d in details)
