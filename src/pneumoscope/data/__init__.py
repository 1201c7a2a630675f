"""Data layer: source readers, the manifest, image decoding, preprocessing, splits + leakage check, the image cache.

Import the submodules (``pneumoscope.data.imaging``, ``.preprocess``, ``.manifest``, ``.splits``, ``.cache``); this
package itself imports nothing heavy.
"""

from __future__ import annotations
