"""CPU inference speed: the default bundled model vs plain timm ResNet18 fp32, each through PyTorch and onnxruntime.

    python benchmarks/cpu_inference.py [MODEL] [--images DIR] [--threads N] [--repeat R] [--out DIR]

MODEL is a run folder, model.safetensors or bundled name (default: the default bundled model; if none is installed,
the same architecture with random weights, ``--arch`` at ``--size`` px, which is fine for speed: the output says
which). Every figure includes decoding the image file, the training preprocess, the forward pass, softmax/threshold
and the scope verdict (image statistics and the applicability check: what ``pneumoscope predict`` does). Images default to the full-resolution Kermany sample (several
hundred to ~2,500 px JPEGs). The reference is timm ``resnet18`` (random init, fp32, grey input repeated to 3
channels) behind the same ``Predictor`` pipeline, exported to ONNX the same way.

Throughput: ``Predictor.predict_files`` at batch 32 (2 decoding threads), after one warm-up batch; best and median
of ``--repeat`` passes. Latency: one file at a time, decode to result, median and 95th percentile after warm-up.
Targets: >= 40 images/s at batch 32 and <= 100 ms single-image latency on 2 cores, whichever engine is
faster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

# what the pneumoscope CLI sets before torch is imported (pneumoscope.cli.main; see docs/PERFORMANCE.md)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REFERENCE = "timm resnet18 fp32"
TARGET_IMAGES_PER_S = 40.0
TARGET_LATENCY_MS = 100.0


def load_average() -> str:
    """The 1/5/15-minute load averages (what `uptime` prints)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def throughput(predictor, paths: list[Path], batch_size: int, repeat: int) -> tuple[float, float]:
    """images/s of ``predict_files`` over ``paths``: best and median of ``repeat`` passes (after a warm-up batch)."""
    list(predictor.predict_files(paths[:batch_size], batch_size=batch_size))  # warm-up
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        rows = list(predictor.predict_files(paths, batch_size=batch_size))
        rates.append(len(rows) / (time.perf_counter() - started))
        assert not any(r["error"] for r in rows), [r["error"] for r in rows if r["error"]][:3]
    return max(rates), statistics.median(rates)


def latency(predictor, paths: list[Path]) -> tuple[float, float]:
    from pneumoscope.inference.sources import load_input

    for path in paths[:3]:
        predictor.predict_arrays([load_input(path)])
    times = []
    for path in paths:
        started = time.perf_counter()
        predictor.predict_arrays([load_input(path)])
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times), float(np.percentile(times, 95))


def decode_rate(predictor, paths: list[Path], threads: int = 2) -> float:
    """images/s of the part before the model: decode + preprocess + image statistics, ``threads`` threads (as
    ``predict_files`` decodes)."""
    from concurrent.futures import ThreadPoolExecutor

    from pneumoscope.inference.sources import load_input

    def ready(path: Path):
        return predictor.ready(load_input(path))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(ready, paths))
    return len(paths) / (time.perf_counter() - started)


def resnet18_module():
    """Plain timm ResNet18 fp32 (random init, 2 classes), the grey input repeated to 3 channels."""
    import timm
    import torch

    class Grey(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = timm.create_model("resnet18", num_classes=2, pretrained=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.expand(-1, 3, -1, -1))

    torch.manual_seed(0)
    return Grey().eval()


def resnet18_references(size: int, workdir: Path) -> dict:
    """The ResNet18 reference behind the same Predictor pipeline: PyTorch, and onnxruntime (exported like
    ``inference.export``: TorchScript exporter, opset 17, dynamic batch)."""
    import warnings

    import onnxruntime
    import torch

    from pneumoscope.inference.backends import OnnxBackend, TorchBackend
    from pneumoscope.inference.predictor import Predictor
    from pneumoscope.models.meta import ModelMeta

    module = resnet18_module()
    info = ModelMeta.from_dict({"classes": ["normal", "pneumonia"], "image_size": size, "task": "binary"}, "resnet18")
    onnx_path = workdir / "resnet18.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.rand(2, 1, size, size),), str(onnx_path), dynamo=False,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return {
        f"{REFERENCE} (pytorch)": Predictor(TorchBackend(module, "cpu"), info, model_id="timm-resnet18-fp32",
                                            source=Path("resnet18")),
        f"{REFERENCE} (onnxruntime)": Predictor(OnnxBackend(session), info, model_id="timm-resnet18-fp32-onnx",
                                                source=onnx_path),
    }


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


def measure(args: argparse.Namespace, paths: list[Path]) -> tuple[str, int, dict[str, tuple[float, ...]], float]:
    """(model description, image size, {engine: (best img/s, median img/s, p50 ms, p95 ms)}, decode-only img/s)."""
    from pneumoscope.inference.export import export_onnx
    from pneumoscope.inference.loading import load_predictor

    with tempfile.TemporaryDirectory() as tmp:
        ref, description = model_reference(args, Path(tmp))
        torch_predictor = load_predictor(ref, backend="pytorch")
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(ref, onnx_path)
        engines = {"model (pytorch)": torch_predictor, "model (onnxruntime)": load_predictor(onnx_path),
                   **resnet18_references(torch_predictor.image_size, Path(tmp))}
        decode_only = decode_rate(torch_predictor, paths[: args.n_throughput])
        rows = {}
        for name, predictor in engines.items():
            best, median = throughput(predictor, paths[: args.n_throughput], args.batch_size, args.repeat)
            p50, p95 = latency(predictor, paths[: args.n_latency])
            rows[name] = (best, median, p50, p95)
    return description, torch_predictor.image_size, rows, decode_only


def best_engine(rows: dict[str, tuple[float, ...]], prefix: str) -> str:
    """The faster engine (by throughput) of the rows whose name starts with ``prefix``."""
    return max((name for name in rows if name.startswith(prefix)), key=lambda name: rows[name][0])


def main() -> None:
    from pneumoscope.paths import data_root

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--images", type=Path, default=None, help="folder of test images")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for torch")
    parser.add_argument("--arch", default="efficientnet_lite0", help="architecture when no model is installed")
    parser.add_argument("--size", type=int, default=224, help="image size when no model is installed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-throughput", type=int, default=128, help="images per throughput pass")
    parser.add_argument("--repeat", type=int, default=3, help="throughput passes (best and median reported)")
    parser.add_argument("--n-latency", type=int, default=30, help="images for the latency figure")
    parser.add_argument("--out", type=Path, default=None, help="write cpu_inference.json here")
    args = parser.parse_args()

    import onnxruntime
    import torch

    torch.set_num_threads(args.threads)
    from pneumoscope.inference.sources import iter_image_files

    folder = args.images or data_root() / "chest_xray_fullres_sample"
    files = list(iter_image_files([folder]))
    paths = [files[i % len(files)] for i in range(max(args.n_throughput, args.n_latency))]
    load_before = load_average()
    description, size, rows, decode_only = measure(args, paths)
    load_after = load_average()

    print(f"model: {description}, {size} px; images: {folder} ({len(files)} files); {datetime.now():%Y-%m-%d %H:%M}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{args.threads}, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY')}; torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; decode + preprocess + "
          f"scope verdict included; load average before {load_before}, after {load_after}")
    bs = f"img/s @bs{args.batch_size}"
    print(f"{'engine':34s} {bs:>13s} {'median':>8s} {'latency p50':>12s} {'p95':>8s} {'img/s vs r18':>13s}")
    for name, (best, median, p50, p95) in rows.items():
        engine = name[name.index("("):]
        reference = rows[f"{REFERENCE} {engine}"][0]
        print(f"{name:34s} {best:13.1f} {median:8.1f} {p50:10.1f}ms {p95:6.1f}ms {best / reference:12.2f}x")
    print(f"{'decode + preprocess + stats only':34s} {decode_only:13.1f}   (2 threads, no model: the ceiling of every row)")
    model, reference = best_engine(rows, "model"), best_engine(rows, REFERENCE)
    ips, p50 = rows[model][0], rows[model][2]
    print(f"fastest engine for the model: {model}; ratio model / {REFERENCE}, each on its faster engine: "
          f"throughput {ips / rows[reference][0]:.2f}x, latency p50 {p50 / rows[reference][2]:.2f}x")
    print(f"targets: >= {TARGET_IMAGES_PER_S:.0f} img/s at batch {args.batch_size}: {ips:.1f} "
          f"({'met' if ips >= TARGET_IMAGES_PER_S else 'missed'}); <= {TARGET_LATENCY_MS:.0f} ms single image: "
          f"{p50:.1f} ms p50, {rows[model][3]:.1f} ms p95 ({'met' if p50 <= TARGET_LATENCY_MS else 'missed'} at p50)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {"model": description, "image_size": size, "images": str(folder), "threads": args.threads,
                   "batch_size": args.batch_size, "decode_only_images_per_s": decode_only,
                   "load_before": load_before, "load_after": load_after,
                   "rows": {name: dict(zip(("images_per_s_best", "images_per_s_median", "latency_p50_ms",
                                            "latency_p95_ms"), values, strict=True)) for name, values in rows.items()}}
        (args.out / "cpu_inference.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
