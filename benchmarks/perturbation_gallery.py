"""One PNG grid of every acquisition-shift perturbation at every severity, on one real chest X-ray.

    python benchmarks/perturbation_gallery.py OUT.png [--image FILE] [--seed N]

Rows are perturbations, columns the clean image and severities 1..5 (a blank tile where a perturbation has fewer
levels). The image is perturbed at its stored resolution, as the stress test does; default: the first Kermany
train NORMAL image (224 px) under the data root. Use it to check by eye that the severities look like what real
scanners and export pipelines produce.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def default_image() -> Path:
    from pneumoscope.paths import data_root

    folder = data_root() / "chest_xray" / "train" / "NORMAL"
    files = sorted(folder.glob("*.jpeg"))
    if not files:
        raise SystemExit(f"no images in {folder}; pass --image FILE or set PNEUMOSCOPE_DATA.")
    return files[0]


def gallery(image: np.ndarray, out: Path, seed: int = 0, title: str = "") -> None:
    """Save the grid of ``image`` (float32 (H, W) in [0, 1]) under every perturbation and severity to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pneumoscope.robustness.perturbations import SEVERITIES, get_perturbation, list_perturbations, perturb

    names = list_perturbations()
    columns = 1 + len(SEVERITIES)
    fig, axes = plt.subplots(len(names), columns, figsize=(1.9 * columns, 2.05 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        spec = get_perturbation(name)
        for col in range(columns):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
                ax.set_ylabel(name, fontsize=9)
                ax.set_title("clean", fontsize=8)
            elif col in spec.severities:
                ax.imshow(perturb(image, name, col, seed), cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
                ax.set_title(f"{col}: {spec.parameter(col)}", fontsize=8)
            else:
                ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG file to write")
    parser.add_argument("--image", type=Path, default=None, help="image file (default: a Kermany NORMAL)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from pneumoscope.data.imaging import load_image

    path = args.image or default_image()
    image = load_image(path)
    gallery(image, args.out, args.seed, title=f"{path.name} ({image.shape[1]}x{image.shape[0]} px)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
