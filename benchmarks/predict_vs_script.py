"""``pneumoscope predict`` vs the plain script a user would write (benchmarks/plain_predict.py), paired.

    python benchmarks/predict_vs_script.py [MODEL] [--images N] [--pairs 3] [--out DIR]

Both run as fresh processes on the same folder of full-resolution JPEGs (``--images`` links cycling through the
Kermany full-resolution originals and the official val images, several hundred to ~2,500 px), with the same ONNX
export of MODEL (default: kermany-binary, the default bundled model). This process imports nothing heavy, so that
its children's peak memory is their own. Each pair runs the two in alternating order; per process:
wall time from start to exit and peak memory (``ru_maxrss`` of the child). Printed: the medians, the ratios
predict / script (targets: wall <= 1.3, peak memory <= 1.5), the share of files given the same label, and the wall
time of ``pneumoscope predict`` on a single image.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process; exits on failure."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0


def image_folder(root: Path, count: int) -> Path:
    """``count`` symbolic links (distinct names) cycling through the full-resolution originals."""
    from pneumoscope.paths import data_root

    data = data_root()
    sources = sorted((data / "chest_xray_fullres_sample").rglob("*.jpeg")) + sorted(
        (data / "chest_xray" / "val").rglob("*.jpeg"))
    if not sources:
        raise SystemExit(f"no full-resolution JPEGs under {data}: set PNEUMOSCOPE_DATA")
    folder = root / "images"
    folder.mkdir()
    for i in range(count):
        source = sources[i % len(sources)]
        (folder / f"{i:04d}-{source.name}").symlink_to(source)
    return folder


def labels(path: Path) -> dict[str, str]:
    with open(path, newline="") as handle:
        return {Path(row["path"]).name: row["label"] for row in csv.DictReader(handle)}


def export_model(pneumoscope: str, model: str, root: Path) -> Path:
    """The ONNX file of ``model`` (``pneumoscope export``, in a child process: this process stays small, so that
    the children forked from it report their own peak memory, not a copy of ours)."""
    path = root / "model.onnx"
    run([pneumoscope, "export", model, "--out", str(path)])
    return path


def measure(args: argparse.Namespace) -> dict[str, Any]:
    model = args.model or "kermany-binary"
    pneumoscope = str(Path(sys.executable).with_name("pneumoscope"))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pneumoscope-predict-bench-") as tmp:
        root = Path(tmp)
        folder = image_folder(root, args.images)
        onnx = export_model(pneumoscope, model, root)
        commands = {
            "pneumoscope predict": [pneumoscope, "predict", model, str(folder), "--out", str(root / "predict.csv")],
            "plain script": [sys.executable, str(HERE / "plain_predict.py"), str(onnx), str(folder),
                             str(root / "script.csv")],
        }
        run(commands["pneumoscope predict"])  # warm-up: the ONNX cache and the page cache
        figures: dict[str, dict[str, list[float]]] = {name: {"wall": [], "rss": []} for name in commands}
        for pair in range(args.pairs):
            order = list(commands) if pair % 2 == 0 else list(reversed(commands))
            for name in order:
                wall, rss = run(commands[name])
                figures[name]["wall"].append(wall)
                figures[name]["rss"].append(rss)
        ours, theirs = labels(root / "predict.csv"), labels(root / "script.csv")
        same = sum(ours.get(name) == label for name, label in theirs.items()) / max(1, len(theirs))
        single = [run([pneumoscope, "predict", model, str(next(folder.iterdir())), "--out",
                       str(root / "one.csv")])[0] for _ in range(args.pairs)]
    medians = {name: {k: statistics.median(v) for k, v in f.items()} for name, f in figures.items()}
    return {
        "model": model, "images": args.images, "pairs": args.pairs, "runs": figures, "medians": medians,
        "wall_ratio": medians["pneumoscope predict"]["wall"] / medians["plain script"]["wall"],
        "rss_ratio": medians["pneumoscope predict"]["rss"] / medians["plain script"]["rss"],
        "same_label": same, "single_image_wall_s": statistics.median(single),
        "load": [" ".join(f"{x:.2f}" for x in load_before), " ".join(f"{x:.2f}" for x in os.getloadavg())],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def report(figures: dict[str, Any]) -> str:
    lines = [(f"{figures['model']}, {figures['images']} full-resolution JPEGs, {figures['pairs']} alternating pairs; "
             f"load {figures['load'][0]} -> {figures['load'][1]}; {figures['date']}"), "",
             "| process | wall s (median) | runs | peak MiB (median) |", "|---|---|---|---|"]
    for name, runs in figures["runs"].items():
        m = figures["medians"][name]
        lines.append(f"| {name} | {m['wall']:.2f} | {', '.join(f'{w:.2f}' for w in runs['wall'])} | {m['rss']:.0f} |")
    lines += ["", (f"predict / script: wall {figures['wall_ratio']:.2f} (target <= 1.3), "
                  f"peak memory {figures['rss_ratio']:.2f} (target <= 1.5); same label on "
                  f"{100 * figures['same_label']:.1f} % of the files; single image: "
                  f"{figures['single_image_wall_s']:.2f} s wall")]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="bundled name, run folder or model.safetensors "
                        "(default: kermany-binary, the default bundled model)")
    parser.add_argument("--images", type=int, default=624)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write predict_vs_script.json here")
    args = parser.parse_args()
    figures = measure(args)
    text = report(figures)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "predict_vs_script.json").write_text(json.dumps({**figures, "report": text}, indent=2) + "\n")


if __name__ == "__main__":
    main()
