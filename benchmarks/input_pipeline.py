"""Input pipeline vs model: is training fed fast enough? images/s of each part and of real training.

    python benchmarks/input_pipeline.py [--data DIR] [--limit N] [--size PX] [--model NAME] [--device auto|cpu|cuda]
                                        [--precision auto|32|bf16|16] [--channels-last auto|on|off] [--compile]

Rows (all after warm-up, the decoded-image cache warm, so no epoch decodes an image):

- cache read: the training ``DataLoader`` of ``PneumoDataModule`` alone (uint8 batches out of the memmap cache);
- input pipeline on DEVICE: cache read + transfer + float conversion + the preset's batched augmentation
  (``training.augment.BatchAugment``), on the CPU and, when a GPU is visible, on the GPU;
- model-bound: forward + backward + optimizer step of the model on synthetic tensors already on the device (same
  batch size, precision, memory format and compile setting as training);
- training: the real ``ClassifierModule`` + ``PneumoDataModule`` under a Lightning ``Trainer`` (loading, augmentation,
  forward, backward, step).

Each row runs ``--warmup`` batches, then ``--repeat`` timed windows of ``--steps`` batches (best and median window
reported); the device is synchronised only at the window edges.

The ratio training / model-bound says how much the input pipeline costs (target >= 0.8). On a CPU the pipeline
and the model share the same cores, so the ratio is ~ 1 / (1 + model rate / pipeline rate).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

# what the pneumoscope CLI sets before torch is imported (pneumoscope.cli.main; see docs/PERFORMANCE.md)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load_average() -> str:
    """The 1/5/15-minute load averages (what `uptime` prints)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def build_config(args: argparse.Namespace, device: str):
    from pneumoscope.training.config import resolve_config

    return resolve_config(preset=args.preset, overrides={
        "task": "binary",
        "data": {"paths": [str(args.data)], "image_size": args.size, "num_workers": args.workers},
        "model": {"name": args.model, "pretrained": False},
        "trainer": {"batch_size": args.batch_size, "device": device, "precision": args.precision,
                    "channels_last": {"auto": "auto", "on": True, "off": False}[args.channels_last],
                    "compile": args.compile, "epochs": 1},
    })


def manifest_for(args: argparse.Namespace):
    """Patient-grouped subsample of ``--limit`` images of the data folder, hashed and split like a training run."""
    from pneumoscope.data.manifest import build_manifest, scan_manifest
    from pneumoscope.data.splits import assign_splits
    from pneumoscope.training.run import subsample_task

    table = build_manifest([args.data], scan=False)
    if args.limit:
        table = subsample_task(table, "binary", args.limit, seed=0)
    table = scan_manifest(table, progress=False)
    return assign_splits(table, "binary", 0.15, seed=0)


def batches(loader, count: int) -> Iterator[Any]:
    """``count`` batches of ``loader``, starting new epochs as needed."""
    done = 0
    while done < count:
        for batch in loader:
            yield batch
            done += 1
            if done == count:
                return


def synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


class Stopwatch:
    """Time stamps at the ends of the batches that start and end the timed windows: ``warmup - 1``, then every
    ``steps`` batches. The device is synchronised only there, so that the GPU queue is never drained in a window."""

    def __init__(self, device: str, warmup: int, steps: int, repeat: int):
        self.device = device
        self.marks = {warmup - 1 + k * steps for k in range(repeat + 1)}
        self.count = warmup + repeat * steps  # batches to run
        self.stamps: list[float] = []
        self.batches = 0

    def batch_done(self) -> None:
        if self.batches in self.marks:
            synchronize(self.device)
            self.stamps.append(time.perf_counter())
        self.batches += 1

    def rates(self, steps: int, batch_size: int) -> list[float]:
        """images/s of each window."""
        return [steps * batch_size / max(b - a, 1e-9) for a, b in zip(self.stamps, self.stamps[1:])]


def time_loader(loader, clock: Stopwatch) -> Stopwatch:
    """The data loader alone (uint8 batches)."""
    for _ in batches(loader, clock.count):
        clock.batch_done()
    return clock


def time_pipeline(loader, augment, device: str, clock: Stopwatch, channels_last: bool) -> Stopwatch:
    """Loading + transfer + float conversion + augmentation on ``device``."""
    import torch

    from pneumoscope.training.module import to_float_batch

    augment = augment.to(device) if augment is not None else None
    for images, _ in batches(loader, clock.count):
        x = to_float_batch(images.to(device, non_blocking=True))
        if augment is not None:
            x = augment(x)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        clock.batch_done()
    return clock


def autocast_dtype(precision: str):
    import torch

    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)


def time_model(config, device: str, precision: str, channels_last: bool, clock: Stopwatch) -> Stopwatch:
    """Forward + backward + AdamW step on random tensors already on ``device``."""
    import torch
    import torch.nn.functional as F

    from pneumoscope.training.run import build_model

    model = build_model(config).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    network = torch.compile(model) if config.trainer.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size, batch = config.data.image_size, config.trainer.batch_size
    x = torch.rand(batch, 1, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=device)
    dtype = autocast_dtype(precision)
    for _ in range(clock.count):
        with torch.autocast(device_type=device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(network(x).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.batch_done()
    return clock


def time_training(config, manifest, device: str, clock: Stopwatch, workers: int) -> Stopwatch:
    """Real training steps (Lightning, ClassifierModule, PneumoDataModule; loading included)."""
    import lightning as L
    import torch

    from pneumoscope.device import resolve_channels_last, resolve_precision
    from pneumoscope.training.augment import BatchAugment
    from pneumoscope.training.datamodule import PneumoDataModule
    from pneumoscope.training.module import ClassifierModule
    from pneumoscope.training.run import build_model, quiet_lightning

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            clock.batch_done()

    quiet_lightning()
    on_gpu = device == "cuda"
    channels_last = resolve_channels_last(config.trainer.channels_last)
    augment = BatchAugment(config.augment, config.data.image_size)
    model = build_model(config)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    module = ClassifierModule(model, config, augment=None if augment.is_identity else augment,
                              channels_last=channels_last)
    datamodule = PneumoDataModule(manifest, config, pin_memory=on_gpu, num_workers=workers)
    trainer = L.Trainer(accelerator=device, devices=1, precision=resolve_precision(config.trainer.precision, device),
                        max_epochs=-1, max_steps=clock.count, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        benchmark=True, callbacks=[Clock()])
    trainer.fit(module, datamodule=datamodule)
    return clock


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from pneumoscope.device import resolve_accelerator, resolve_channels_last, resolve_precision
    from pneumoscope.training.augment import BatchAugment
    from pneumoscope.training.datamodule import PneumoDataModule, resolve_num_workers

    torch.manual_seed(0)
    device = resolve_accelerator(args.device)
    on_gpu = device == "cuda"
    config = build_config(args, device)
    workers = resolve_num_workers(config.data.num_workers, on_gpu)
    precision = resolve_precision(config.trainer.precision, device)
    channels_last = resolve_channels_last(config.trainer.channels_last)
    batch = config.trainer.batch_size
    figures: dict[str, Any] = {"load_before": load_average()}

    started = time.perf_counter()
    manifest = manifest_for(args)
    datamodule = PneumoDataModule(manifest, config, pin_memory=on_gpu, num_workers=workers)
    datamodule.setup()
    figures["prepare_seconds"] = time.perf_counter() - started  # manifest + cache (cold or warm)
    figures["train_images"] = len(datamodule.train_index)
    loader = datamodule.train_dataloader()
    augment = BatchAugment(config.augment, config.data.image_size)
    augment = None if augment.is_identity else augment
    def clock(on: str) -> Stopwatch:
        return Stopwatch(on, args.warmup, args.steps, args.repeat)

    timed: list[tuple[str, Stopwatch]] = [
        (f"cache read (DataLoader, {workers} workers, uint8)", time_loader(loader, clock("cpu"))),
        ("input pipeline on cpu (read + augment)", time_pipeline(loader, augment, "cpu", clock("cpu"), False)),
    ]
    if torch.cuda.is_available():
        timed.append(("input pipeline on cuda (read + copy + augment)",
                      time_pipeline(loader, augment, "cuda", clock("cuda"), channels_last)))
    timed.append((f"model-bound fwd+bwd on {device} (synthetic tensors)",
                  time_model(config, device, precision, channels_last, clock(device))))
    timed.append((f"training on {device} (pipeline + model, Lightning)",
                  time_training(config, manifest, device, clock(device), workers)))
    rows = []
    for name, watch in timed:
        rates = watch.rates(args.steps, batch)
        rows.append((name, max(rates), statistics.median(rates)))
    model_bound, training = rows[-2][1], rows[-1][1]
    figures.update(rows=rows, ratio=training / model_bound, median_ratio=rows[-1][2] / rows[-2][2], device=device,
                   precision=precision, channels_last=channels_last, workers=workers, load_after=load_average())
    return figures


def print_report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    import torch
    from rich.console import Console
    from rich.table import Table

    title = (f"{args.model}, {args.size} px, batch {args.batch_size}, preset {args.preset}, "
             f"{figures['train_images']} train images; {figures['device']} {figures['precision']}, "
             f"channels_last {figures['channels_last']}, compile {args.compile}")
    table = Table(title=title, title_justify="left")
    table.add_column("step")
    table.add_column(f"images/s (best of {args.repeat})", justify="right")
    table.add_column("median", justify="right")
    for name, best, median in figures["rows"]:
        table.add_row(name, f"{best:,.1f}", f"{median:,.1f}")
    console = Console(width=130)
    console.print(table)
    verdict = "meets" if figures["ratio"] >= 0.8 else "misses"
    console.print(f"training / model-bound = {figures['ratio']:.2f} ({verdict} the 0.8 target; best windows); "
                  f"medians: {figures['median_ratio']:.2f}")
    device_name = torch.cuda.get_device_name(0) if figures["device"] == "cuda" else platform.processor() or "cpu"
    console.print(f"machine: {device_name}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
                  f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY')}; "
                  f"load average before {figures['load_before']}, after {figures['load_after']}; "
                  f"manifest + cache {figures['prepare_seconds']:.1f} s; {datetime.now():%Y-%m-%d %H:%M}")


def main() -> None:
    from pneumoscope.paths import data_root

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root() / "chest_xray")
    parser.add_argument("--limit", type=int, default=512, help="patient-grouped subsample (0: all images)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--preset", default="strong",
                        help="augmentation recipe (strong: the heaviest, the worst case for the pipeline; recommended; plain)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", choices=("auto", "32", "bf16", "16"), default="auto")
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--workers", default="auto", help="data-loader processes (auto: 0 on CPU, up to 8 on GPU)")
    parser.add_argument("--steps", type=int, default=10, help="batches per timed window")
    parser.add_argument("--repeat", type=int, default=3, help="timed windows per row (best and median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="batches before measuring")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--out", type=Path, default=None, help="write input_pipeline.json here")
    args = parser.parse_args()
    args.workers = args.workers if args.workers == "auto" else int(args.workers)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    figures = measure(args)
    print_report(args, figures)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {**figures, "rows": [{"step": n, "images_per_s_best": b, "images_per_s_median": m}
                            for n, b, m in figures["rows"]],
                   "args": {k: str(v) for k, v in vars(args).items()}}
        (args.out / "input_pipeline.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
