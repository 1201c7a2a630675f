"""``pneumoscope serve``: the web service and web page (FastAPI + uvicorn), the model loaded once."""

from __future__ import annotations

import ipaddress

import typer

SERVE_HELP = (
    "Serve a model over HTTP: a web page at / and a REST API (POST /predict, /predict/batch, /explain; "
    "GET /health, /model; schema at /openapi.json, interactive docs at /docs).\n\n"
    "MODEL is a run folder, a model.safetensors, an .onnx file or a bundled model name (default: the default "
    "bundled model).\n\n"
    "Research use only: this is not a medical device. The service has no authentication: keep it on "
    "127.0.0.1, or put it behind a proxy that authenticates, before exposing it to a network."
)


def register(app: typer.Typer) -> None:
    app.command("serve", help=SERVE_HELP)(serve)


def serve(
    model: str = typer.Argument(None, help="Run folder, model.safetensors, .onnx file or bundled name."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 = every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on (0 = any free port)."),
    max_upload_mb: float = typer.Option(20.0, min=0.01, help="Largest accepted upload, in MB."),
    max_batch_files: int = typer.Option(16, min=1, max=1000, help="Most files per /predict/batch."),
    body_timeout: float = typer.Option(20.0, min=0.1, help="Seconds an upload may pause (and its grace period "
                                                            "before it must average 500 bytes/s); then 408."),
    device: str = typer.Option("cpu", help="Torch device for the model (cpu, cuda, cuda:1, ...)."),
    log_level: str = typer.Option("info", help="uvicorn log level (critical, error, warning, info, debug)."),
) -> None:
    """Load MODEL once and serve it until interrupted."""
    import uvicorn

    from pneumoscope.cli.common import console
    from pneumoscope.inference import bundled
    from pneumoscope.inference.loading import load_predictor
    from pneumoscope.serve import create_app

    reference = model or bundled.default_model_name()
    _check_model_path(reference)
    with console.status(f"loading model {reference}"):
        predictor = load_predictor(reference, device=device)
    console.print(f"model [bold]{predictor.model_id}[/] (classes: {', '.join(predictor.classes)})")
    if not _is_loopback(host):
        console.print(f"[yellow]warning:[/] listening on {host}: the service has no authentication; "
                      "anyone who can reach this address can use it.")
    base = f"http://{_url_host(host)}:{port}"
    console.print(f"web page: {base}/   API docs: {base}/docs")
    console.print("[bold]Research use only — not a medical device.[/]")
    app = create_app(predictor, max_upload_mb=max_upload_mb, max_batch_files=max_batch_files,
                     body_timeout_s=body_timeout)
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1, server_header=False)


def _check_model_path(reference: str) -> None:
    """A reference that is clearly a path (not a bundled name) must exist; say so plainly if it does not."""
    from pathlib import Path

    from pneumoscope.errors import ModelError

    path = Path(reference).expanduser()
    model_suffix = path.suffix.lower() in (".onnx", ".safetensors")
    looks_like_path = "/" in reference or "\\" in reference or model_suffix
    if looks_like_path and not path.exists():
        raise ModelError("model not found.", path=path,
                         fix="pass a run folder, a model.safetensors, an .onnx file or a bundled model name.")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
