"""The web service (FastAPI) and its web page: ``create_app(predictor)``; ``pneumoscope serve`` runs it."""

from __future__ import annotations

from pneumoscope.serve.app import create_app

__all__ = ["create_app"]
