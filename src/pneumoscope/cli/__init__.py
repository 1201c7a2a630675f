"""Command-line interface (``pneumoscope ...``)."""
