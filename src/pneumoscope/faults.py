"""Named kill points, for fault-injection tests of what a crash leaves behind.

With ``PNEUMOSCOPE_KILL_AT=POINT`` (or ``POINT@N``: the N-th time the point is reached) in its environment, a
process sends itself SIGKILL when it reaches that point: no clean-up code runs, as in a crash, an out-of-memory kill
or ``kill -9``. The tests (tests/training/test_fault_injection.py) stop a real training run this way at every place
where it writes, then resume it and check that nothing was lost. Without the variable a point does nothing (one
environment lookup).

Points:

- ``train_batch``: after each training batch;
- ``epoch_end``: an epoch's row is recorded in memory, nothing of the epoch is on disk yet;
- ``epoch_saved``: ``checkpoints/last.ckpt`` holds the epoch; ``best.ckpt`` and ``metrics.csv`` are not written yet;
- ``write:<file name>``: an atomic write (``pneumoscope.files``) has put every byte into its temporary file and not
  yet moved it into place (e.g. ``write:last.ckpt``, ``write:model.safetensors``, ``write:summary.json``).
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "PNEUMOSCOPE_KILL_AT"

_reached: dict[str, int] = {}


def reached(point: str) -> None:
    """SIGKILL this process if ``$PNEUMOSCOPE_KILL_AT`` names ``point`` (and this is the N-th time it is reached)."""
    target = os.environ.get(KILL_ENV)
    if not target:
        return
    name, _, nth = target.partition("@")
    if name != point:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] >= int(nth or 1):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
