"""CLI start-up time: wall seconds of ``pneumoscope --help`` (and of each command's ``--help``), median of N runs.

    python benchmarks/cli_startup.py [--runs 5] [--commands]

Each run is a fresh process of the installed ``pneumoscope`` entry point (interpreter start, imports, help text), as
a user types it. Target: <= 1.0 s. The test ``tests/cli/test_cli_startup.py`` guards the cause (no heavy
library imported for help) without timing; this script gives the figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

TARGET_SECONDS = 1.0


def entry_point() -> list[str]:
    script = Path(sys.executable).with_name("pneumoscope")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pneumoscope.cli.main"]


def timed(command: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` fresh processes of ``command`` (one unmeasured run first, to warm the file cache)."""
    subprocess.run(command, capture_output=True, check=True)
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def command_names() -> list[str]:
    import typer

    from pneumoscope.cli.main import app

    return sorted(typer.main.get_command(app).commands)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--commands", action="store_true", help="also time `pneumoscope COMMAND --help`")
    args = parser.parse_args()
    base = entry_point()
    cases = [["--help"]] + ([[name, "--help"] for name in command_names()] if args.commands else [])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{'command':32s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for case in cases:
        seconds = timed(base + case, args.runs)
        print(f"{'pneumoscope ' + ' '.join(case):32s} {statistics.median(seconds):9.3f} {min(seconds):7.3f} "
              f"{max(seconds):7.3f}")
    print(f"{args.runs} runs each; target <= {TARGET_SECONDS} s; {os.cpu_count()} CPUs; load average before {load}, "
          f"after {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {datetime.now():%Y-%m-%d %H:%M}")


if __name__ == "__main__":
    main()
