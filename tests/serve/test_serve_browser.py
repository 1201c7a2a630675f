"""The web page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) on a real server."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_helpers import png_bytes

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; scripts/setup does)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed in .venv")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM if CHROMIUM.exists() else
                                                                 shutil.which("chromium")),
                                             headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server_url):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    outside: list[str] = []
    local = (server_url, "data:", "blob:")
    page.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
    page.goto(server_url + "/")
    yield page
    context.close()
    assert not outside, f"the page reached outside the server: {outside}"


def wait_for_model_line(page, model_id: str) -> None:
    page.wait_for_function("id => document.getElementById('model-line').textContent.includes(id)",
                           arg=model_id)


def wait_for_result(page) -> str:
    page.wait_for_function("() => document.getElementById('result-label').textContent.length > 0 && "
                           "!document.body.classList.contains('busy')", timeout=60_000)
    return page.text_content("#result-label")


def image_is_loaded(page, selector: str) -> bool:
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


def assert_not_blank(png: bytes) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    assert pixels.std() > 20, "screenshot is (nearly) one colour"
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 50


@pytest.mark.realdata
def test_upload_a_real_xray_and_see_class_probabilities_and_heatmap(page, predictor, real_data, tmp_path):
    xray = min((real_data / "chest_xray_fullres_sample" / "train" / "PNEUMONIA").glob("*.jpeg"))
    wait_for_model_line(page, predictor.model_id)
    assert "not a medical device" in page.inner_text("#notice").lower()

    page.set_input_files("#file-input", str(xray))
    label = wait_for_result(page)

    assert label in predictor.classes
    assert page.is_visible("#heatmap")
    assert image_is_loaded(page, "#heatmap") and image_is_loaded(page, "#xray")
    size_of = "img => [img.naturalWidth, img.naturalHeight]"
    sizes = [page.eval_on_selector(selector, size_of) for selector in ("#xray", "#heatmap")]
    assert sizes[0] == sizes[1]  # the heatmap covers the image exactly
    bars = page.query_selector_all(".bar-row")
    assert [b.query_selector(".bar-name").text_content() for b in bars] == list(predictor.classes)
    values = [float(b.query_selector("[role=meter]").get_attribute("aria-valuenow")) for b in bars]
    assert sum(values) == pytest.approx(100, abs=0.2)
    assert "50.0%" in page.inner_text("#threshold")
    assert page.is_visible(".bar-threshold")
    assert page.is_hidden("#error")

    shot = tmp_path / "serve_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert_not_blank(shot.read_bytes())

    page.fill("#opacity", "25")
    page.dispatch_event("#opacity", "input")
    assert page.eval_on_selector("#heatmap", "img => img.style.opacity") == "0.25"
    assert page.inner_text("#opacity-value") == "25%"



def drop_file(page, data: bytes, name: str, mime: str) -> None:
    """Drop a file onto the drop zone, as a drag-and-drop from the desktop does."""
    page.evaluate(
        """([b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            const zone = document.getElementById('dropzone');
            for (const type of ['dragenter', 'dragover', 'drop']) {
                const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
                zone.dispatchEvent(new DragEvent(type, init));
            }
        }""",
        [base64.b64encode(data).decode(), name, mime],
    )


def test_drag_and_drop_and_a_readable_error(page, predictor, make_xray):
    wait_for_model_line(page, predictor.model_id)
    drop_file(page, b"patient notes, not an image\n" * 10, "notes.png", "image/png")
    page.wait_for_selector("#error", state="visible")
    assert "not a supported image" in page.inner_text("#error-detail")
    assert "notes.png" in page.inner_text("#error-detail")

    drop_file(page, png_bytes(make_xray(128, 3)), "dropped.png", "image/png")
    assert wait_for_result(page) in predictor.classes
    assert page.is_hidden("#error")
    assert "dropped.png" in page.inner_text("#viewer-caption")


def test_out_of_scope_images_get_a_prominent_warning_and_an_untrusted_label(page, predictor, server_url, make_xray,
                                                                            tmp_path):
    from xray_images import write_dicom_file

    yy, xx = np.mgrid[0:160, 0:200]
    photo = np.dstack([(xx * 255 // 199), (yy * 255 // 159), 255 - (xx * 255 // 199)]).astype(np.uint8)
    data = png_bytes(photo)
    verdict = httpx.post(server_url + "/predict", files={"file": ("photo.png", data, "image/png")}).json()
    assert not verdict["in_scope"], "precondition: the image checks flag a colour gradient"

    wait_for_model_line(page, predictor.model_id)
    drop_file(page, data, "photo.png", "image/png")
    label = wait_for_result(page)
    assert label in predictor.classes  # the label is still shown...
    assert page.is_visible("#scope-warning") and page.is_visible("#untrusted-tag")  # ...marked as untrusted
    warning = page.inner_text("#scope-warning")
    assert "does not look like a chest x-ray" in warning.lower() and "do not trust" in warning.lower()
    assert "not_a_chest_xray" in warning
    assert "untrusted" in page.get_attribute("#prediction", "class")

    ct = write_dicom_file(tmp_path / "ct.dcm", make_xray(96, 5), Modality="CT").read_bytes()
    drop_file(page, ct, "ct.dcm", "application/dicom")
    page.wait_for_selector("#status:has-text('ct.dcm analysed')")
    assert "modality CT" in page.inner_text("#scope-detail")
    assert "not a radiograph" in page.inner_text("#scope-title").lower()

    drop_file(page, png_bytes(make_xray(96, 1)), "chest.png", "image/png")
    page.wait_for_selector("#status:has-text('chest.png analysed')")
    assert page.is_hidden("#scope-warning")
    assert page.is_hidden("#untrusted-tag") and "untrusted" not in (page.get_attribute("#prediction", "class") or "")


def test_swagger_docs_render_offline(browser, server_url):
    context = browser.new_context()
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((server_url, "data:")) else outside.append(r.url))
    page.goto(server_url + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    text = page.inner_text("body")
    assert "/predict/batch" in text and "/explain" in text
    context.close()
    assert not outside, f"/docs loaded resources from outside the server: {outside}"
