"""The report in Debian's headless Chromium: loads without errors, shows every section, is not blank."""

from __future__ import annotations

import pytest
from browser import assert_not_blank, open_in_chromium

from pneumoscope.report.html import SECTIONS, write_report

pytestmark = pytest.mark.browser

CHECK_PAGE = """async () => ({
  headings: [...document.querySelectorAll('section.card > h2')].map(h => h.textContent.trim()),
  visible: [...document.querySelectorAll('section.card')].every(s => s.getBoundingClientRect().height > 40),
  images: [...document.images].map(i => i.complete && i.naturalWidth > 0),
  tocTarget: await (async () => {
    document.querySelector('nav.toc a[href="#shortcut-audit"]').click();
    await new Promise(done => setTimeout(done, 1500));  // smooth scrolling
    return Math.round(document.getElementById('shortcut-audit').getBoundingClientRect().top);
  })(),
  riskColour: getComputedStyle(document.querySelector('.callout.risk')).borderLeftColor,
})"""


def test_report_opens_in_chromium_without_errors_and_is_not_blank(full_sections, tmp_path):
    report = write_report(full_sections, tmp_path / "report.html", meta={"run": "runs/demo", "task": "4class"})
    result = open_in_chromium(report.as_uri(), tmp_path / "report.png", evaluate=CHECK_PAGE)
    assert result.errors == [] and result.outside_requests == []
    assert result.title == "Pneumoscope evaluation report"
    state = result.evaluated
    assert [h.split(".", 1)[1].strip() for h in state["headings"]] == [t for _, t, _ in SECTIONS] + ["Notes"]
    assert state["visible"] and len(state["images"]) == 8 and all(state["images"])
    assert abs(state["tocTarget"]) < 60  # the contents link scrolled its section to the top
    assert state["riskColour"] == "rgb(180, 35, 24)"
    assert (tmp_path / "report.png").read_bytes() == result.screenshot
    assert_not_blank(result.screenshot)

    full = open_in_chromium(report.as_uri(), tmp_path / "report-full.png", full_page=True)
    assert_not_blank(full.screenshot)
