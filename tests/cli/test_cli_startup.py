"""``pneumoscope --help`` stays fast: no heavy library is imported by the help of the CLI or of any command.

Counting imported modules instead of timing makes the check robust on a loaded CI machine (the start-up time itself
is measured in docs/PERFORMANCE.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# (typer itself imports pydantic and rich to render help, so those two are not listed)
HEAVY = ("torch", "torchvision", "lightning", "pytorch_lightning", "timm", "kornia", "pandas", "numpy", "scipy",
         "sklearn", "onnx", "onnxruntime", "cv2", "PIL", "matplotlib", "pydicom", "fastapi", "uvicorn")

# runs the real entry point, then prints the top-level packages that ended up imported
PROBE = """
import json, sys
sys.argv = ["pneumoscope", *sys.argv[1:]]
from pneumoscope.cli.main import main
try:
    main()
except SystemExit as stop:
    code = stop.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}), file=sys.stderr)
"""


def imported_by(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
                          check=False)
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert result["code"] in (0, None), done.stderr[-2000:]
    assert "Usage" in done.stdout
    return set(result["modules"])


def command_names() -> list[str]:
    import typer

    from pneumoscope.cli.main import app

    return sorted(typer.main.get_command(app).commands)


def test_probe_sees_heavy_imports():
    """The probe itself works: a command that runs (not only its help) does import numpy."""
    done = subprocess.run([sys.executable, "-c", PROBE.replace("main()", "import numpy; main()"), "--help"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert "numpy" in json.loads(done.stderr.strip().splitlines()[-1])["modules"]


def test_top_level_help_imports_no_heavy_library():
    heavy = imported_by("--help") & set(HEAVY)
    assert not heavy, f"`pneumoscope --help` imports {sorted(heavy)}; import them inside the command functions"


@pytest.mark.parametrize("command", command_names())
def test_command_help_imports_no_heavy_library(command):
    heavy = imported_by(command, "--help") & set(HEAVY)
    assert not heavy, f"`pneumoscope {command} --help` imports {sorted(heavy)}; import them inside the function"
