"""Pure metric code, no I/O and no models: classification metrics (``classification``), bootstrap confidence
intervals (``bootstrap``), the operating threshold (``threshold``), calibration (``calibration``), the shortcut audit
(``shortcut``), result tables (``tables``) and the recipe selection rule (``ranking``). Everything that trains,
scores or writes files sits above it. Import the submodules directly."""
