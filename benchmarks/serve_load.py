"""Load test of ``pneumoscope serve`` on loopback: N concurrent clients for a bounded time.

Starts ``pneumoscope serve MODEL`` on a free 127.0.0.1 port (or uses ``--url`` of a server already running on
this machine), then runs ``--clients`` asyncio clients that each POST images to ``/predict`` (or ``/explain``)
back to back until ``--duration`` seconds have passed. Prints and writes (``--out``, JSON) requests/s, latency
percentiles, status codes and errors.

    python benchmarks/serve_load.py --model kermany-binary --clients 50 --duration 30
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --clients 8 --endpoint explain

Images: ``--images`` files, else up to 64 real X-rays from ``$PNEUMOSCOPE_DATA/chest_xray/train``. Only
loopback addresses are accepted as targets.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

try:
    import aiohttp  # load clients: httpx's async pool saturates 2 cores long before the server does
except ImportError:  # pragma: no cover - a benchmark-only dependency
    sys.exit("benchmarks/serve_load.py needs aiohttp: pip install aiohttp")

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="model to serve (run folder, .onnx, bundled name); starts the server")
    target.add_argument("--url", help="base URL of a server already running on loopback")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured (default 30, max 600)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first (default 3)")
    parser.add_argument("--endpoint", choices=("predict", "explain"), default="predict")
    parser.add_argument("--images", nargs="*", type=Path, help="image files to send (default: real X-rays)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if not 1 <= args.clients <= 1000:
        parser.error("--clients must be between 1 and 1000")
    if not 0 < args.duration <= 600:
        parser.error("--duration must be in (0, 600] seconds")
    return args


def default_images(limit: int = 64) -> list[Path]:
    sys.path.insert(0, str(REPO / "src"))
    from pneumoscope.paths import data_root

    root = data_root() / "chest_xray" / "train"
    half = limit // 2
    paths = sorted(root.glob("NORMAL/*.jpeg"))[:half] + sorted(root.glob("PNEUMONIA/*.jpeg"))[:half]
    if not paths:
        sys.exit(f"no images found under {root}; pass --images FILE... or set PNEUMOSCOPE_DATA")
    return paths


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        sys.exit(f"refusing to load-test {host!r}: only loopback targets (127.0.0.0/8, ::1, localhost)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    """``pneumoscope serve MODEL`` in its own process (so the clients do not share its GIL)."""
    port = free_port()
    command = [sys.executable, "-c", "from pneumoscope.cli.main import main; main()", "serve", model,
               "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited with status {process.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop_server(process)
    sys.exit("the server did not become healthy within 180 s")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def client(http: aiohttp.ClientSession, path: str, payloads: list[tuple[str, bytes]], offset: int,
                 measure_from: float, stop_at: float, records: list[tuple[float, str]]) -> None:
    """One client: requests back to back until ``stop_at``; records those from ``measure_from``."""
    i = offset
    while True:
        started = time.monotonic()
        if started >= stop_at:
            return
        name, data = payloads[i % len(payloads)]
        i += 1
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
        try:
            async with http.post(path, data=form) as response:
                await response.read()
                outcome = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as error:
            outcome = type(error).__name__
        if started >= measure_from:
            records.append((time.monotonic() - started, outcome))


async def run_load(url: str, args: argparse.Namespace, payloads: list[tuple[str, bytes]]) -> dict:
    path = "/predict" if args.endpoint == "predict" else "/explain"
    records: list[tuple[float, str]] = []
    connector = aiohttp.TCPConnector(limit=args.clients)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:
        now = time.monotonic()
        measure_from, stop_at = now + args.warmup, now + args.warmup + args.duration
        await asyncio.gather(*(client(http, path, payloads, k, measure_from, stop_at, records)
                               for k in range(args.clients)))
        elapsed = time.monotonic() - measure_from
        async with http.get("/health") as response:
            health = await response.json()
    return summarise(records, elapsed, args, health)


def summarise(records: list[tuple[float, str]], elapsed: float, args: argparse.Namespace,
              health: dict) -> dict:
    outcomes = Counter(outcome for _, outcome in records)
    ok = [latency for latency, outcome in records if outcome == "200"]
    latencies = np.array(ok) * 1000 if ok else np.array([np.nan])
    return {
        "endpoint": "/" + args.endpoint,
        "clients": args.clients,
        "duration_s": round(elapsed, 2),
        "requests": len(records),
        "ok": len(ok),
        "errors": len(records) - len(ok),
        "outcomes": dict(sorted(outcomes.items())),
        "requests_per_s": round(len(ok) / elapsed, 2),
        "latency_ms": {q: round(float(np.percentile(latencies, p)), 1)
                       for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "model_id": health.get("model_id"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }


def main() -> None:
    args = parse_args()
    paths = args.images or default_images()
    payloads = [(p.name, p.read_bytes()) for p in paths]
    process = None
    if args.url:
        check_loopback(args.url)
        url = args.url.rstrip("/")
    else:
        process, url = start_server(args.model)
    try:
        result = asyncio.run(run_load(url, args, payloads))
    finally:
        if process is not None:
            stop_server(process)
    result["images"] = len(payloads)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
