"""The self-contained HTML report: every section, nothing external, absent sections omitted, text escaped."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.metrics.bootstrap import headline_with_ci
from pneumoscope.metrics.threshold import operating_point
from pneumoscope.report.html import SECTIONS, render_report, write_report


class Collector(HTMLParser):
    """Headings, ids, TOC links and every src/href of a page."""

    def __init__(self):
        super().__init__()
        self.h2, self.ids, self.toc, self.urls, self.tags = [], [], [], [], []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self._in_h2 = tag == "h2" or self._in_h2
        if "id" in attrs:
            self.ids.append(attrs["id"])
        for key in ("src", "href"):
            if key in attrs:
                self.urls.append(attrs[key])
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.toc.append(attrs["href"][1:])

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2 and data.strip() and not re.fullmatch(r"\d+\.", data.strip()):
            self.h2.append(data.strip())


def parse(page: str) -> Collector:
    collector = Collector()
    collector.feed(page)
    return collector


def test_every_section_is_rendered_with_its_heading_and_toc_entry(full_sections, tmp_path):
    out = write_report(full_sections, tmp_path / "report.html", meta={"run": "runs/demo", "task": "4class"})
    page = out.read_text(encoding="utf-8")
    parsed = parse(page)
    expected = [title for _, title, _ in SECTIONS] + ["Notes"]
    assert parsed.h2 == expected
    assert parsed.toc == [i for i in parsed.ids if i != ""] and len(parsed.toc) == len(expected)
    assert "runs/demo" in page and "0.720 [95 % CI 0.690 – 0.750]" in page
    assert page.count('class="callout risk"') == 1  # the synthetic sources are separable: flagged in red
    assert 'class="flag"' in page


def test_report_is_self_contained(full_sections):
    page = render_report(full_sections)
    parsed = parse(page)
    assert not [u for u in parsed.urls if re.match(r"^\s*(https?:)?//", u)], "external src/href"
    assert "link" not in parsed.tags and "script" not in parsed.tags
    images = [u for u in parsed.urls if not u.startswith("#")]
    assert len(images) == 8  # every plot embedded
    for url in images:
        assert url.startswith("data:image/png;base64,")
        assert base64.b64decode(url.split(",", 1)[1]).startswith(b"\x89PNG")
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page) and "@import" not in page


def test_absent_sections_are_omitted_cleanly(full_sections):
    page = render_report({"headline": full_sections["headline"], "config": "task: binary"})
    parsed = parse(page)
    assert parsed.h2 == ["Headline metrics", "Configuration"]
    assert parsed.toc == ["headline", "config"]
    assert "Confusion matrix" not in page and "data:image" not in page
    assert parse(render_report({})).h2 == []
    assert parse(render_report({"per_class": None, "config": {"a": 1}})).h2 == ["Configuration"]


def test_binary_headline_shows_sensitivity_specificity_and_operating_points(rng):
    y = rng.integers(0, 2, 200)
    p1 = np.clip(0.4 * y + 0.6 * rng.random(200), 0, 1)
    probs = np.stack([1 - p1, p1], axis=1)
    points = pd.DataFrame([{"operating point": name, **operating_point(y, p1, t)}
                           for name, t in (("stored (youden)", 0.42), ("0.5", 0.5))])
    page = render_report({"headline": {"ci": headline_with_ci(y, probs, ["normal", "pneumonia"], threshold=0.42,
                                                              n_boot=100),
                                       "operating_points": points}})
    assert "sensitivity (pneumonia)" in page and "specificity" in page
    assert "p(pneumonia) ≥ 0.420" in page and "stored (youden)" in page and "Operating points" in page


def test_text_is_escaped_and_bad_sections_raise(full_sections):
    page = render_report({"splits": {"train": "<script>alert(1)</script>"},
                          "extra": [{"title": "x<y", "text": "a & b"}]}, title="<b>report</b>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "x&lt;y" in page and "a &amp; b" in page
    with pytest.raises(ConfigError, match="unknown report section"):
        render_report({"confusion": b""})
    with pytest.raises(DataError, match="not a PNG"):
        render_report({"roc_pr": b"GIF89a..."})
    with pytest.raises(DataError, match="PNG bytes or a PNG file"):
        render_report({"training_curves": {"png": 42}})


def test_shortcut_section_not_flagged_and_not_applicable():
    ok = {"applicable": True, "risk": False, "auc": 0.55, "message": "The source is not easily predictable.",
          "sources": {"a": 10, "b": 10}}
    page = render_report({"shortcut_audit": [ok, {"applicable": False, "reason": "the data has a single source"}]})
    assert 'class="callout ok"' in page and 'class="callout risk"' not in page
    assert "not applicable" in page and 'class="flag"' not in page
