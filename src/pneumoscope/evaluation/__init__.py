"""Evaluation of trained runs (orchestration; the metric code itself is ``pneumoscope.metrics``): ``selection``
(which images), ``evaluate``, ``cv``, ``grid`` and ``compare``. Import the submodules directly; this package imports
nothing heavy on its own."""
