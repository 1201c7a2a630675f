"""Pneumoscope: pneumonia detection and classification on chest X-rays.

Heavy libraries (torch, lightning, pandas) are imported lazily by the modules that need them, so that
``import pneumoscope`` and ``pneumoscope --help`` stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
