"""CPU inference speed: PyTorch vs onnxruntime for one model, with plain timm ResNet18 fp32 as a reference.

    python benchmarks/cpu_inference.py [MODEL] [--images DIR] [--threads N]

MODEL is a run folder, model.safetensors or bundled name (default: the default bundled model; if none is installed, a
random-init ``--arch`` model at ``--size`` px, which is fine for speed). Every figure includes decoding the image
file, the training preprocess, the forward pass, softmax/threshold and the OOD guard — what ``pneumoscope predict``
does. Images default to the full-resolution Kermany sample (several hundred to ~2,500 px JPEGs).

Throughput: ``Predictor.predict_files`` at batch 32 (2 decoding threads), after one warm-up batch.
Latency: one file at a time, decode to result, median and 90th percentile after warm-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def throughput(predictor, paths: list[Path], batch_size: int) -> float:
    list(predictor.predict_files(paths[:batch_size], batch_size=batch_size))  # warm-up
    started = time.perf_counter()
    rows = list(predictor.predict_files(paths, batch_size=batch_size))
    elapsed = time.perf_counter() - started
    assert not any(r["error"] for r in rows), [r["error"] for r in rows if r["error"]][:3]
    return len(rows) / elapsed


def latency(predictor, paths: list[Path]) -> tuple[float, float]:
    from pneumoscope.inference.sources import load_input

    for path in paths[:3]:
        predictor.predict_inputs([load_input(path)])
    times = []
    for path in paths:
        started = time.perf_counter()
        predictor.predict_inputs([load_input(path)])
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times), float(np.percentile(times, 90))


def resnet18_reference(size: int):
    """Plain timm ResNet18 fp32 (random init; 1→3 channels) behind the same Predictor pipeline."""
    import timm
    import torch

    from pneumoscope.inference.predictor import ModelInfo, Predictor, _TorchBackend

    class Grey(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = timm.create_model("resnet18", num_classes=2, pretrained=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.expand(-1, 3, -1, -1))

    info = ModelInfo.from_meta({"classes": ["normal", "pneumonia"], "image_size": size, "task": "binary"}, "resnet18")
    return Predictor(_TorchBackend(Grey(), "cpu"), info, model_id="timm-resnet18-fp32", source=Path("resnet18"))


def model_reference(args: argparse.Namespace, workdir: Path) -> tuple[str, str]:
    from pneumoscope.inference import bundled

    if args.model:
        return args.model, args.model
    if bundled.find_bundled(bundled.default_model_name()):
        return bundled.default_model_name(), f"bundled {bundled.default_model_name()}"
    import torch

    from pneumoscope.models import create_model, save_classifier

    torch.manual_seed(0)
    model = create_model(args.arch, num_classes=2, pretrained=False).eval()
    meta = {"architecture": args.arch, "model_kwargs": {}, "task": "binary", "classes": ["normal", "pneumonia"],
            "image_size": args.size, "preprocessing": {"clahe": False}, "threshold": 0.5, "temperature": 1.0}
    save_classifier(model, meta, workdir / "random")
    return str(workdir / "random"), f"{args.arch} (random init, no bundled model installed)"


def main() -> None:
    from pneumoscope.paths import data_root

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--images", type=Path, default=None, help="folder of test images")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for torch / onnxruntime")
    parser.add_argument("--arch", default="efficientnet_lite0", help="architecture when no model is given")
    parser.add_argument("--size", type=int, default=224, help="image size when no model is given")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-throughput", type=int, default=128, help="images for the throughput figure")
    parser.add_argument("--n-latency", type=int, default=30, help="images for the latency figure")
    args = parser.parse_args()

    import onnxruntime
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from pneumoscope.inference.export import export_onnx
    from pneumoscope.inference.predictor import Predictor
    from pneumoscope.inference.sources import iter_image_files

    folder = args.images or data_root() / "chest_xray_fullres_sample"
    files = list(iter_image_files([folder]))
    paths = [files[i % len(files)] for i in range(max(args.n_throughput, args.n_latency))]
    with tempfile.TemporaryDirectory() as tmp:
        ref, description = model_reference(args, Path(tmp))
        torch_predictor = Predictor.load(ref, backend="pytorch")
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(ref, onnx_path)
        onnx_predictor = Predictor.load(onnx_path)
        engines = {
            "pytorch": torch_predictor,
            "onnxruntime": onnx_predictor,
            "timm resnet18 fp32 (pytorch)": resnet18_reference(torch_predictor.image_size),
        }
        rows = {}
        for name, predictor in engines.items():
            ips = throughput(predictor, paths[: args.n_throughput], args.batch_size)
            median, p90 = latency(predictor, paths[: args.n_latency])
            rows[name] = (ips, median, p90)

    reference = rows["timm resnet18 fp32 (pytorch)"]
    print(f"model: {description}, {torch_predictor.image_size} px; images: {folder} ({len(files)} files)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads; "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; decode + preprocess + OOD included")
    print(f"{'engine':30s} {'img/s @bs' + str(args.batch_size):>12s} {'latency p50':>12s} {'p90':>8s} "
          f"{'speed vs r18':>13s}")
    for name, (ips, median, p90) in rows.items():
        print(f"{name:30s} {ips:12.1f} {median:10.1f}ms {p90:6.1f}ms {ips / reference[0]:12.2f}x")


if __name__ == "__main__":
    main()
