"""Time to accuracy on one GPU: raw Kermany folder → binary model, cold cache then warm, and the speed flags compared.

    python benchmarks/gpu_time_to_accuracy.py                       # the H100/H200 recipe (needs a CUDA GPU)
    python benchmarks/gpu_time_to_accuracy.py --device cpu --max-images 96 --epochs 1 --image-size 64 \\
        --model simple_cnn --no-pretrained --variants cold,warm     # a tiny CPU run that checks the script works

Each variant is one ``pneumoscope train`` process (task binary, the official Kermany ``train`` folder, patient-grouped
validation carved out of it), timed from process start to the written model: manifest (hashing every file), the
decoded-image cache, training, validation-set threshold and temperature, model files. The image cache lives in a
fresh folder under ``--out``, so the first variant builds it (``cold``) and the others reuse it (``warm``).

Variants (``--variants``, comma-separated, in this order by default):

- ``cold``: bf16 autocast + channels_last, empty cache (the first run on a new machine);
- ``warm``: the same, cache built (every later run);
- ``fp32``: fp32, no channels_last (warm cache): the baseline the flags are measured against;
- ``bf16``: bf16 autocast, no channels_last (warm): what bf16 alone gives;
- ``nondet``: bf16 + channels_last with ``trainer.deterministic=false``, which also turns on ``cudnn.benchmark``
  (the default ``warn`` keeps cuDNN to deterministic kernels);
- ``compile``: bf16 + channels_last + ``torch.compile`` (warm; compile time counts).

The table gives wall time, the time outside epochs (start-up, manifest, cache, final steps), the first and mean epoch
time, training images/s, validation accuracy (best epoch, argmax) and whether the run met its target
(>= 95 % validation accuracy within 60 s wall). ``--out`` keeps every run folder and ``time_to_accuracy.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

TARGET_ACCURACY = 0.95
TARGET_SECONDS = 60.0
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str
    channels_last: bool
    compile: bool
    note: str
    deterministic: str = "warn"


VARIANTS = {
    "cold": Variant("cold", "bf16", True, False, "bf16 + channels_last, cache built in the run"),
    "warm": Variant("warm", "bf16", True, False, "bf16 + channels_last, warm cache"),
    "fp32": Variant("fp32", "32", False, False, "fp32, no channels_last, warm cache"),
    "bf16": Variant("bf16", "bf16", False, False, "bf16, no channels_last, warm cache"),
    "nondet": Variant("nondet", "bf16", True, False, "bf16 + channels_last, deterministic off + cudnn.benchmark, "
                      "warm cache", deterministic="false"),
    "compile": Variant("compile", "bf16", True, True, "bf16 + channels_last + torch.compile, warm cache"),
}


def load_average() -> str:
    """The 1/5/15-minute load averages (what `uptime` prints)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pneumoscope_command() -> list[str]:
    """The ``pneumoscope`` entry point of this interpreter's environment."""
    script = Path(sys.executable).with_name("pneumoscope")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pneumoscope.cli.main"]


def train_command(args: argparse.Namespace, variant: Variant, run_dir: Path) -> list[str]:
    command = [
        *pneumoscope_command(), "train", "--data", str(args.data), "--task", "binary", "--model", args.model,
        "--pretrained" if args.pretrained else "--no-pretrained", "--preset", args.preset,
        "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--device", args.device, "--seed", str(args.seed), "--out", str(run_dir), "--no-progress",
        "--set", f"trainer.precision={variant.precision}",
        "--set", f"trainer.channels_last={str(variant.channels_last).lower()}",
        "--set", f"trainer.compile={str(variant.compile).lower()}",
        "--set", f"trainer.deterministic={variant.deterministic}",
    ]
    if args.lr is not None:
        command += ["--lr", str(args.lr)]
    if args.max_images:
        command += ["--max-images", str(args.max_images)]
    if args.num_workers is not None:
        command += ["--num-workers", str(args.num_workers)]
    for setting in args.set or []:
        command += ["--set", setting]
    return command


def read_epochs(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def run_variant(args: argparse.Namespace, variant: Variant, root: Path, env: dict[str, str]) -> dict[str, Any]:
    """Train one variant in its own process; its figures from the process wall clock and the run folder."""
    run_dir = root / variant.name
    command = train_command(args, variant, run_dir)
    log = root / f"{variant.name}.log"
    load = load_average()
    started = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - started
    result: dict[str, Any] = {"variant": variant.name, "note": variant.note, "command": command, "wall_s": wall,
                              "returncode": done.returncode, "log": str(log), "load_before": load}
    if done.returncode != 0 or not (run_dir / "summary.json").is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        result["error"] = " | ".join(tail)
        return result
    summary = json.loads((run_dir / "summary.json").read_text())
    epochs = read_epochs(run_dir)
    seconds = [e["seconds"] for e in epochs]
    accuracies = [e["val_acc"] for e in epochs]
    reached = next((int(e["epoch"]) for e in epochs if e["val_acc"] >= TARGET_ACCURACY), None)
    result.update(
        epochs=len(epochs), epoch_s=seconds, outside_epochs_s=wall - sum(seconds), first_epoch_s=seconds[0],
        mean_epoch_s=sum(seconds[1:]) / len(seconds[1:]) if len(seconds) > 1 else seconds[0],
        images_per_s=max(e["images_per_second"] for e in epochs), val_acc=summary.get("best_val_acc"),
        val_acc_per_epoch=accuracies, first_epoch_at_target=reached,
        acc_at_threshold=summary.get("val_metrics", {}).get("accuracy_at_threshold"),
        precision=summary.get("precision"), device_name=summary.get("device_name"),
        split_counts=summary.get("split_counts"), summary_wall_s=summary.get("wall_seconds"),
    )
    result["meets_target"] = bool(result["val_acc"] is not None and result["val_acc"] >= TARGET_ACCURACY
                                  and wall <= TARGET_SECONDS)
    return result


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=(f"binary, {args.model}{' (pretrained)' if args.pretrained else ''}, {args.image_size} px, "
                         f"{args.epochs} epochs, batch {args.batch_size}, preset {args.preset}"
                         + (f", max {args.max_images} images" if args.max_images else ", full train folder")),
                  title_justify="left")
    for column in ("variant", "wall s", "outside epochs s", "epoch 1 s", "mean epoch s", "train img/s",
                   "val acc", "acc@thr", "epoch ≥95 %", "target", "vs fp32"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    baseline = next((r for r in results if r["variant"] == "fp32" and "error" not in r), None)
    for r in results:
        if "error" in r:
            table.add_row(r["variant"], f"{r['wall_s']:.1f}", *["-"] * 7, "failed", "")
            continue
        speedup = f"{r['images_per_s'] / baseline['images_per_s']:.2f}x" if baseline else ""
        table.add_row(
            r["variant"], f"{r['wall_s']:.1f}", f"{r['outside_epochs_s']:.1f}", f"{r['first_epoch_s']:.1f}",
            f"{r['mean_epoch_s']:.1f}", f"{r['images_per_s']:,.0f}", f"{r['val_acc']:.4f}",
            "-" if r["acc_at_threshold"] is None else f"{r['acc_at_threshold']:.4f}",
            str(r["first_epoch_at_target"] or "-"), "met" if r["meets_target"] else "missed", speedup)
    console = Console(width=150)
    console.print(table)
    for r in results:
        if "error" in r:
            console.print(f"[red]{r['variant']} failed[/red] (exit {r['returncode']}; log {r['log']}): {r['error']}")
    console.print("target: >= 95 % validation accuracy (best epoch) within 60 s wall, process start to model files; "
                  "'vs fp32': training images/s relative to the fp32 variant; 'train img/s': best epoch.")


def parse_args() -> argparse.Namespace:
    from pneumoscope.paths import data_root

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root() / "chest_xray", help="raw Kermany folder")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "time_to_accuracy")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--preset", default="recommended")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's)")
    parser.add_argument("--max-images", type=int, default=None, help="patient-grouped subsample (tiny runs)")
    parser.add_argument("--num-workers", default=None, help="data-loader processes (default: auto)")
    parser.add_argument("--device", choices=("cuda", "cpu", "auto"), default="cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", help="extra config override KEY=VALUE (repeatable)")
    args = parser.parse_args()
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if not (args.data / "train").is_dir():
        parser.error(f"{args.data} has no train/ folder; pass --data PATH/chest_xray or set PNEUMOSCOPE_DATA")
    return args


def main() -> None:
    args = parse_args()
    root = args.out / datetime.now().strftime("%Y%m%d-%H%M%S")
    cache = root / "cache"
    root.mkdir(parents=True)
    env = {**os.environ, "PNEUMOSCOPE_CACHE": str(cache)}
    results = []
    for name in args.variants.split(","):
        if name == "cold":
            shutil.rmtree(cache, ignore_errors=True)
        print(f"[{datetime.now():%H:%M:%S}] {name}: {VARIANTS[name].note}", flush=True)
        results.append(run_variant(args, VARIANTS[name], root, env))
    print_table(results, args)
    device = next((r.get("device_name") for r in results if r.get("device_name")), None) or platform.processor()
    print(f"machine: {device}, {os.cpu_count()} CPUs; python {platform.python_version()}; load average at the start "
          f"of each run: {', '.join(r['variant'] + ' ' + r['load_before'] for r in results)}; "
          f"{datetime.now():%Y-%m-%d %H:%M}")
    print("command of the first run: " + " ".join(results[0]["command"]))
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results, "date": datetime.now().isoformat()}
    (root / "time_to_accuracy.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"run folders, logs and time_to_accuracy.json: {root}")
    sys.exit(0 if all("error" not in r for r in results) else 1)


if __name__ == "__main__":
    main()
