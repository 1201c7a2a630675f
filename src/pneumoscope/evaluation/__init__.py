"""Evaluation: metrics with bootstrap confidence intervals, the operating threshold, calibration, shortcut audit
and result tables. Import the submodules (``metrics``, ``bootstrap``, ``threshold``, ``calibration``, ``shortcut``,
``tables``) directly; this package imports nothing heavy on its own."""
