"""Evaluation: metrics with bootstrap confidence intervals, the operating threshold, calibration, shortcut audit
and result tables (``metrics``, ``bootstrap``, ``threshold``, ``calibration``, ``shortcut``, ``tables``), and the
orchestration of trained runs: ``runs`` (open a run folder, score images), ``selection`` (which images), ``evaluate``,
``cv``, ``grid`` and ``compare``. Import the submodules directly; this package imports nothing heavy on its own."""
