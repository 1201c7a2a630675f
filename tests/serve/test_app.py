"""The REST API on a real uvicorn server (loopback), with the real Predictor on a tiny random-init model."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_helpers import dicom_bytes, jpeg_bytes, png_bytes

MB = 1024 * 1024


def post_file(url: str, path: str, data: bytes, name: str = "image.png", content_type: str = "image/png",
              **params) -> httpx.Response:
    return httpx.post(url + path, files={"file": (name, data, content_type)}, params=params, timeout=60)


def expected(predictor, data: bytes) -> dict:
    """What the Predictor says about an upload when called directly (same decoder as the server)."""
    from pneumoscope.inference.sources import load_input_bytes

    return predictor.predict_arrays([load_input_bytes(data, "direct")])[0]


def assert_json_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["detail"].strip()
    if code is not None:
        assert body["error"] == code
    return body


def assert_still_serving(url: str, image: bytes) -> None:
    assert httpx.get(url + "/health", timeout=30).json()["status"] == "ok"
    assert post_file(url, "/predict", image).status_code == 200


# ---------------------------------------------------------------- the endpoints
def test_health(server_url, predictor):
    body = httpx.get(server_url + "/health").json()
    assert body["status"] == "ok"
    assert body["model_id"] == predictor.model_id
    assert body["uptime_s"] >= 0


def test_model_describes_the_served_model(server_url, predictor, model_dir):
    body = httpx.get(server_url + "/model").json()
    assert body["model_id"] == predictor.model_id
    assert body["classes"] == list(predictor.classes) == ["normal", "pneumonia"]
    assert body["threshold"] == pytest.approx(0.5)
    assert body["image_size"] == 64
    assert body["task"] == "binary"
    assert body["metrics"]["note"] == "random-init test model"
    assert body["limits"] == {"max_upload_mb": 20, "max_batch_files": 8, "max_batch_mb": 80, "body_timeout_s": 20,
                              "min_body_rate_bytes_per_s": 500}
    assert "not a medical device" in body["intended_use"].lower()
    assert body["temperature"] == pytest.approx(predictor.temperature) and body["clahe"] is False


def test_model_schema_is_the_model_metadata_plus_the_service():
    import dataclasses

    from pneumoscope.models.meta import ModelMeta
    from pneumoscope.serve.schemas import ModelInfo

    typed = {f.name for f in dataclasses.fields(ModelMeta)} - {"raw"}
    properties = ModelInfo.model_json_schema()["properties"]
    assert typed <= set(properties)
    assert all(properties[name].get("description") for name in typed)
    assert properties["image_size"]["type"] == "integer" and properties["classes"]["type"] == "array"


def test_predict_png_matches_the_predictor(server_url, predictor, make_xray):
    data = png_bytes(make_xray(96, 1))
    response = post_file(server_url, "/predict", data, name="chest.png")
    assert response.status_code == 200, response.text
    body = response.json()
    want = expected(predictor, data)
    assert body["label"] == want["label"]
    assert body["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["threshold"] == pytest.approx(0.5)
    assert body["in_scope"] is want["in_scope"] is True and body["scope_reason"] == ""
    assert body["scope_checks"]["image"]["ok"] is True
    assert body["model_id"] == predictor.model_id
    assert (body["width"], body["height"], body["filename"]) == (96, 96, "chest.png")


def test_a_ct_dicom_is_labelled_out_of_scope_with_its_reason(server_url, make_xray, tmp_path):
    from xray_images import write_dicom_file

    path = write_dicom_file(tmp_path / "ct.dcm", make_xray(64, 2), Modality="CT", PatientAge="045Y")
    body = post_file(server_url, "/predict", path.read_bytes(), name="ct.dcm").json()
    assert body["in_scope"] is False and body["scope_reason"].startswith("modality CT")
    assert body["scope_checks"]["modality"] == {"value": "CT", "ok": False, "reason": "modality CT",
                                                "detail": body["scope_checks"]["modality"]["detail"]}
    assert "computed tomography" in body["scope_detail"] and body["label"] in ("normal", "pneumonia")
    explained = post_file(server_url, "/explain", path.read_bytes(), name="ct.dcm")
    assert explained.headers["x-in-scope"] == "false" and explained.headers["x-scope-reason"].startswith("modality CT")


def test_predict_with_tta_reports_the_spread(server_url, make_xray):
    body = post_file(server_url, "/predict", png_bytes(make_xray(80, 2)), tta=4).json()
    assert body["tta"] == 4
    assert set(body["probabilities_std"]) == {"normal", "pneumonia"}
    assert all(v >= 0 for v in body["probabilities_std"].values())


def test_predict_dicom(server_url, make_xray):
    image = make_xray(72, 3)
    response = post_file(server_url, "/predict", dicom_bytes(image), name="scan.dcm",
                         content_type="application/dicom")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (72, 72)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_type_is_decided_by_content_not_by_name(server_url, make_xray):
    # A JPEG named .dcm with a misleading content type is still read as the JPEG it is.
    response = post_file(server_url, "/predict", jpeg_bytes(make_xray(64, 4)), name="image.dcm",
                         content_type="text/plain")
    assert response.status_code == 200, response.text


@pytest.mark.realdata
def test_predict_real_full_resolution_image(server_url, real_data):
    path = min((real_data / "chest_xray_fullres_sample" / "train" / "PNEUMONIA").glob("*.jpeg"))
    data = path.read_bytes()
    body = post_file(server_url, "/predict", data, name=path.name, content_type="image/jpeg").json()
    with Image.open(path) as image:
        assert (body["width"], body["height"]) == image.size
    assert body["label"] in ("normal", "pneumonia")


def test_explain_returns_an_overlay_png(server_url, make_xray):
    response = post_file(server_url, "/explain", png_bytes(make_xray(128, 5)), max_side=100)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(response.content))
    assert overlay.mode == "RGB" and overlay.size == (100, 100)
    assert response.headers["x-predicted-class"] in ("normal", "pneumonia")
    assert response.headers["x-target-class"] == response.headers["x-predicted-class"]


def test_explain_json_for_a_chosen_class(server_url, make_xray):
    data = png_bytes(make_xray(96, 6))
    response = httpx.post(server_url + "/explain", params={"format": "json", "class": "normal",
                                                           "method": "gradcam++"},
                          files={"file": ("x.png", data, "image/png")}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["target_class"] == "normal" and body["method"] == "gradcam++"
    import base64

    image = Image.open(io.BytesIO(base64.b64decode(body["image_png"])))
    heatmap = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"])))
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png"])))
    assert image.size == heatmap.size == overlay.size == (body["width"], body["height"]) == (96, 96)
    assert (image.mode, heatmap.mode, overlay.mode) == ("L", "RGBA", "RGB")
    alpha = np.asarray(heatmap)[..., 3]
    assert alpha.max() > alpha.min()  # a heatmap, not a flat layer


def test_explain_rejects_an_unknown_class(server_url, make_xray):
    response = post_file(server_url, "/explain", png_bytes(make_xray(64, 7)), **{"class": "covid"})
    assert "normal, pneumonia" in assert_json_error(response, 422, "unknown_class")["detail"]


def test_batch_keeps_order_and_reports_errors_inline(server_url, predictor, make_xray):
    images = [png_bytes(make_xray(64 + 8 * i, 10 + i, pneumonia=i % 2 == 1)) for i in range(3)]
    files = [("files", (f"good{i}.png", data, "image/png")) for i, data in enumerate(images)]
    files.insert(1, ("files", ("notes.png", b"this is not an image\n", "image/png")))
    response = httpx.post(server_url + "/predict/batch", files=files, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["count"], body["errors"]) == (4, 1)
    names = [item["filename"] for item in body["items"]]
    assert names == ["good0.png", "notes.png", "good1.png", "good2.png"]
    bad = body["items"][1]
    assert not bad["ok"] and bad["status_code"] == 415 and bad["error"]["error"] == "unsupported_media_type"
    for item, data in zip([body["items"][i] for i in (0, 2, 3)], images, strict=True):
        assert item["ok"]
        want = expected(predictor, data)["probabilities"]
        assert item["result"]["probabilities"] == pytest.approx(want, abs=1e-6)


def test_batch_refuses_too_many_files(server_url, make_xray):
    data = png_bytes(make_xray(32, 1))
    files = [("files", (f"{i}.png", data, "image/png")) for i in range(9)]
    response = httpx.post(server_url + "/predict/batch", files=files, timeout=60)
    assert "at most 8" in assert_json_error(response, 413, "too_many_files")["detail"]


# ---------------------------------------------------------------- bad uploads
def _truncated_jpeg(make_xray) -> bytes:
    data = jpeg_bytes(make_xray(256, 21))
    return data[: len(data) // 3]


BAD_UPLOADS = {
    "zero bytes": (lambda mx: b"", 400, "empty_file"),
    "50 MB": (lambda mx: os.urandom(50 * MB), 413, "upload_too_large"),
    "text renamed .png": (lambda mx: b"patient notes, not an image\n" * 20, 415, "unsupported_media_type"),
    "truncated JPEG": (_truncated_jpeg, 422, "undecodable_image"),
    "DICOM without pixels": (lambda mx: dicom_bytes(None), 422, "undecodable_image"),
    "1x1 PNG": (lambda mx: png_bytes(np.full((1, 1), 128, np.uint8)), 422, "undecodable_image"),
    "5x40000 strip": (lambda mx: png_bytes(np.full((40_000, 5), 128, np.uint8)), 422, "undecodable_image"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
@pytest.mark.parametrize("endpoint", ["/predict", "/explain"])
def test_bad_upload_gives_a_json_4xx_and_the_server_keeps_serving(server_url, make_xray, case, endpoint):
    build, status, code = BAD_UPLOADS[case]
    response = post_file(server_url, endpoint, build(make_xray), name="upload.png")
    assert_json_error(response, status, code)
    assert_still_serving(server_url, png_bytes(make_xray(64, 30)))


def test_an_oversized_chunked_upload_is_cut_off_early(server_url, make_xray):
    """Without a Content-Length the limit applies while the body streams in (the rest is never read)."""
    sent = 0

    def body():
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
        for _ in range(200):  # up to 200 MB, far past the limit
            sent += MB
            yield os.urandom(MB)

    started = time.monotonic()
    try:
        response = httpx.post(server_url + "/predict", content=body(), timeout=60,
                              headers={"content-type": "multipart/form-data; boundary=b"})
    except httpx.TransportError:  # the server may close before the client finishes writing
        response = None
    if response is not None:
        assert_json_error(response, 413, "upload_too_large")
    assert sent < 200 * MB and time.monotonic() - started < 30
    assert_still_serving(server_url, png_bytes(make_xray(64, 31)))


def _multipart(data: bytes, name: str = "big.png") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_over_cap_upload_answers_413_to_clients_that_send_everything_before_reading(server_url, make_xray,
                                                                                       chunked):
    """http.client writes the whole 40 MB body, then reads: it must get the 413 JSON, not a connection reset."""
    body, content_type = _multipart(os.urandom(40 * MB))
    address = urlsplit(server_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    pieces = (body[i:i + MB] for i in range(0, len(body), MB))
    connection.request("POST", "/predict", body=pieces if chunked else body, encode_chunked=chunked,
                       headers={"Content-Type": content_type})
    response = connection.getresponse()
    assert response.status == 413
    assert response.getheader("content-type").startswith("application/json")
    assert json.loads(response.read())["error"] == "upload_too_large"
    connection.close()
    assert_still_serving(server_url, png_bytes(make_xray(64, 32)))


def test_an_over_cap_upload_answers_413_to_requests(server_url, make_xray):
    import requests

    response = requests.post(server_url + "/predict", files={"file": ("big.png", os.urandom(40 * MB), "image/png")},
                             timeout=60)
    assert response.status_code == 413 and response.json()["error"] == "upload_too_large"
    assert_still_serving(server_url, png_bytes(make_xray(64, 33)))


@pytest.fixture(scope="module")
def impatient_server(predictor) -> str:
    """A server that allows a pause of 1 s in a body (and 500 bytes/s on average after the first second)."""
    from serve_helpers import running_server

    from pneumoscope.serve import create_app

    with running_server(create_app(predictor, body_timeout_s=1.0, min_body_rate=500)) as url:
        yield url


def _send_slowly(url: str, head: bytes, pieces: list[bytes], pause_s: float, limit_s: float = 15.0):
    """Send the request head, then each piece after a pause; returns (status or None, seconds until the server
    answered or closed). Stops sending once the server has answered."""
    import select
    import socket

    address = urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=limit_s) as sock:
        sock.sendall(head)
        for piece in pieces:
            readable, _, _ = select.select([sock], [], [], pause_s)
            if readable or time.monotonic() - started > limit_s:
                break
            try:
                sock.sendall(piece)
            except OSError:  # closed by the server
                break
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.1") else None
    return status, answer, time.monotonic() - started


def test_a_client_waiting_for_100_continue_gets_the_413_without_sending_the_body(server_url):
    head = (b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(30 * MB).encode() + b"\r\n\r\n")
    status, answer, seconds = _send_slowly(server_url, head, [b""] * 50, 0.1)  # the body is never sent
    assert status == 413 and b"upload_too_large" in answer and seconds < 5


def test_a_trickling_body_is_answered_408_and_closed(impatient_server, make_xray):
    """20 bytes/s, each byte in time: only the minimum average rate can stop it."""
    body, content_type = _multipart(png_bytes(make_xray(64, 34)))
    head = (f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    status, answer, seconds = _send_slowly(impatient_server, head, [body[i:i + 1] for i in range(len(body))], 0.05)
    assert status == 408, answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "request_timeout"
    assert seconds < 8  # about 1 s of grace + the little it sent at 500 bytes/s


def test_a_stalled_body_is_answered_408(impatient_server, make_xray):
    body, content_type = _multipart(png_bytes(make_xray(64, 35)))
    head = (f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:100]
    status, _, seconds = _send_slowly(impatient_server, head, [b""] * 100, 0.1)  # then nothing
    assert status == 408 and seconds < 5


def test_a_body_with_short_pauses_is_read(impatient_server, make_xray):
    data = png_bytes(make_xray(64, 36))
    body, content_type = _multipart(data)
    head = (f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    quarter = len(body) // 4 + 1
    status, answer, _ = _send_slowly(impatient_server, head, [body[i:i + quarter] for i in range(0, len(body), quarter)],
                                     0.3)
    assert status == 200, answer[:300]
    assert_still_serving(impatient_server, data)


def test_missing_file_and_bad_parameters_are_json_422(server_url, make_xray):
    assert_json_error(httpx.post(server_url + "/predict", timeout=30), 422, "invalid_request")
    data = png_bytes(make_xray(64, 8))
    assert_json_error(post_file(server_url, "/explain", data, method="lime"), 422, "invalid_request")
    assert_json_error(post_file(server_url, "/predict", data, tta=99), 422, "invalid_request")


def test_unknown_route_and_method_are_json(server_url):
    assert_json_error(httpx.get(server_url + "/nothing-here"), 404, "not_found")
    assert_json_error(httpx.get(server_url + "/predict"), 405, "method_not_allowed")


def test_client_file_name_is_never_used_as_a_path(server_url, make_xray, tmp_path):
    marker = f"pneumoscope-probe-{uuid.uuid4().hex}.png"
    data = png_bytes(make_xray(64, 9))
    response = post_file(server_url, "/predict", data, name=f"../../../../tmp/{marker}")
    assert response.status_code == 200
    assert response.json()["filename"] == marker  # echoed as a bare name
    for folder in (Path("/tmp"), Path.cwd(), Path.home()):
        assert not (folder / marker).exists()


@pytest.mark.parametrize("raw_path", ["/static/../pyproject.toml", "/static/%2e%2e/%2e%2e/pyproject.toml",
                                      "/static/..%2f..%2fapp.py", "/static//etc/passwd"])
def test_no_path_traversal_through_static_files(server_url, raw_path):
    parts = urlsplit(server_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", raw_path)  # sent as is, without client-side normalisation
    response = connection.getresponse()
    body = response.read()
    assert response.status == 404
    assert b"[project]" not in body and b"root:" not in body and b"create_app" not in body


def test_page_and_security_headers(server_url):
    page = httpx.get(server_url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "not a medical device" in page.text.lower()
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in ("/static/app.js", "/static/style.css"):
        assert httpx.get(server_url + asset).status_code == 200
    assert "http://" not in page.text.replace("http://www.w3.org", "") and "https://" not in page.text


def test_docs_work_offline(server_url):
    page = httpx.get(server_url + "/docs")
    assert page.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert httpx.get(server_url + "/docs-assets/swagger-ui-bundle.js").status_code == 200
    schema = httpx.get(server_url + "/openapi.json").json()
    assert {"/predict", "/predict/batch", "/explain", "/health", "/model"} <= set(schema["paths"])


# ---------------------------------------------------------------- concurrency
def test_parallel_requests_get_their_own_results(server_url, predictor, make_xray):
    images = [png_bytes(make_xray(64 + 4 * i, 100 + i, pneumonia=i % 2 == 0)) for i in range(6)]
    wanted = [expected(predictor, data)["probabilities"]["pneumonia"] for data in images]
    # The images must get distinguishable answers, or the test proves nothing.
    assert len({round(p, 6) for p in wanted}) == len(images)
    jobs = [i % len(images) for i in range(36)]

    def call(i: int) -> tuple[int, float, str]:
        response = post_file(server_url, "/predict", images[i], name=f"img{i}.png")
        body = response.json()
        return i, body["probabilities"]["pneumonia"], body["filename"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, jobs))
    for i, p, name in results:
        assert name == f"img{i}.png"
        assert p == pytest.approx(wanted[i], abs=1e-6)


def test_the_event_loop_answers_while_the_model_is_busy(server_url, make_xray):
    """Inference runs off the event loop: /health stays fast while explain requests keep the model busy."""
    data = png_bytes(make_xray(768, 40))
    finished = threading.Event()

    def busy() -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda _: post_file(server_url, "/explain", data), range(8)))
        finished.set()
        return time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=1) as pool:
        load = pool.submit(busy)
        time.sleep(0.2)
        latencies = []
        while not finished.is_set():
            started = time.perf_counter()
            assert httpx.get(server_url + "/health", timeout=30).status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
        busy_seconds = load.result()
    assert latencies, "the load finished before /health could be asked"
    assert max(latencies) < max(0.5, busy_seconds / 4)
