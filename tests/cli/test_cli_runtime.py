"""The CLI process makes idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``) before torch can be imported, and
leaves a policy the user set alone (why: docs/PERFORMANCE.md, CPU inference)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, os, sys
import pneumoscope.cli.main
print(json.dumps({"policy": os.environ.get("OMP_WAIT_POLICY"), "torch_loaded": "torch" in sys.modules}))
"""


def probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cli_sets_passive_wait_policy_before_torch_is_loaded():
    assert probe() == {"policy": "PASSIVE", "torch_loaded": False}


def test_a_policy_set_by_the_user_wins():
    assert probe(OMP_WAIT_POLICY="ACTIVE")["policy"] == "ACTIVE"
