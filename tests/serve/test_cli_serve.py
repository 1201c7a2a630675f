"""``pneumoscope serve`` as a user runs it: a separate process on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from serve_helpers import free_port, png_bytes

CLI = [sys.executable, "-c", "from pneumoscope.cli.main import main; main()"]


def wait_healthy(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("pneumoscope serve did not become healthy")


def test_serve_command_serves_the_model_with_its_limits(model_dir: Path, make_xray):
    port = free_port()
    process = subprocess.Popen([*CLI, "serve", str(model_dir), "--port", str(port), "--max-upload-mb", "0.5",
                                "--max-batch-files", "3", "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        info = httpx.get(url + "/model").json()
        assert info["limits"]["max_upload_mb"] == 0.5 and info["limits"]["max_batch_files"] == 3
        image = png_bytes(make_xray(64, 1))
        good = httpx.post(url + "/predict", files={"file": ("a.png", image, "image/png")})
        assert good.status_code == 200 and good.json()["label"] in info["classes"]
        big = httpx.post(url + "/predict", files={"file": ("b.png", os.urandom(600 * 1024), "image/png")})
        assert big.status_code == 413 and big.json()["error"] == "upload_too_large"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "not a medical device" in stderr.lower()


def test_serve_with_a_missing_model_is_a_one_line_error(tmp_path: Path):
    result = subprocess.run([*CLI, "serve", str(tmp_path / "no-such-run"), "--port", str(free_port())],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr and "no-such-run" in result.stderr
