"""One rank of a CPU DDP training run, launched by torchrun from ``test_training_ddp.py``.

    torchrun --standalone --nproc_per_node 2 ddp_worker.py DATA RUN_DIR RECORD_DIR

Runs the real ``pneumoscope.training.run.train`` (strategy ``ddp``, gloo on CPU, 2 devices) and records, without
changing what it does: the rows each rank's training set served (``CachedImageDataset.__getitem__``), the objects
``_fit`` returned and the weights right after the fit. Writes ``RECORD_DIR/rank{R}.json`` (trainer settings, rows
read, validation figures) and ``RECORD_DIR/rank{R}.safetensors`` (the rank's weights at the end of training).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def tiny_ddp_config(data: str):
    """simple_cnn, 32 px, 2 epochs, batch 4, 2 CPU processes under DDP (trainer.* keys as a user would set them)."""
    from pneumoscope.training.config import resolve_config

    return resolve_config(overrides={
        "task": "binary",
        "data": {"paths": [data], "image_size": 32, "val_fraction": 0.3, "num_workers": 0},
        "model": {"name": "simple_cnn", "pretrained": False},
        "trainer": {"epochs": 2, "batch_size": 4, "device": "cpu", "devices": 2, "num_nodes": 1,
                    "strategy": "ddp", "deterministic": True},
    })


def main(data: str, run_dir: str, record_dir: str) -> None:
    import torch
    from safetensors.torch import save_file

    from pneumoscope.training import run as run_module
    from pneumoscope.training.datamodule import CachedImageDataset

    torch.set_num_threads(1)
    reads: list[tuple[int, int]] = []  # (id of the dataset, manifest row) in the order served
    served = CachedImageDataset.__getitem__

    def recording_getitem(self, item):
        reads.append((id(self), int(self.index[item])))
        return served(self, item)

    fitted: dict[str, object] = {}
    fit = run_module._fit

    def recording_fit(*args, **kwargs):
        fitted["objects"] = fit(*args, **kwargs)
        model = fitted["objects"][1].model
        # the weights as training left them (rank 0 then loads the best epoch's weights to save the model)
        fitted["weights"] = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
                             for k, v in model.state_dict().items()}
        return fitted["objects"]

    CachedImageDataset.__getitem__ = recording_getitem
    run_module._fit = recording_fit
    run_module.train(tiny_ddp_config(data), run_dir, progress=False)

    trainer, module, datamodule = fitted["objects"]
    rank = trainer.global_rank
    train_reads = [row for dataset, row in reads if dataset == id(datamodule.train_set)]
    record = {
        "rank": rank,
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "num_devices": trainer.num_devices,
        "strategy": type(trainer.strategy).__name__,
        "backend": getattr(trainer.strategy, "process_group_backend", None),
        "epochs": trainer.current_epoch,
        "train_rows": [int(i) for i in datamodule.train_index],
        "train_reads": train_reads,
        "val_figures": module.epoch_figures,  # the last validation's loss and accuracy as this rank logged them
    }
    out = Path(record_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(fitted["weights"], str(out / f"rank{rank}.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:4])
