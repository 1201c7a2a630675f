"""Data-parallel training on CPU: 2 processes (torchrun, gloo) through ``training.run.train`` with strategy ddp.

The two ranks must read disjoint shards of the training set in every epoch and finish with identical weights; the
``trainer.devices`` / ``num_nodes`` / ``strategy`` config keys must reach the Lightning Trainer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")
WORLD = 2


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, tiny_kermany):
    """One finished 2-rank run: (run folder, [rank 0 record, rank 1 record], [rank 0 weights, rank 1 weights])."""
    from safetensors.torch import load_file

    base = tmp_path_factory.mktemp("ddp")
    run_dir, records = base / "run", base / "records"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PNEUMOSCOPE_CACHE": str(base / "cache")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
               str(WORKER), str(tiny_kermany), str(run_dir), str(records)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    meta = [json.loads((records / f"rank{r}.json").read_text()) for r in range(WORLD)]
    weights = [load_file(records / f"rank{r}.safetensors") for r in range(WORLD)]
    return run_dir, meta, weights


def test_config_keys_reach_the_trainer(ddp_run):
    _, meta, _ = ddp_run
    for rank, record in enumerate(meta):
        assert record["rank"] == rank
        assert record["world_size"] == WORLD and record["num_devices"] == WORLD and record["num_nodes"] == 1
        assert record["strategy"] == "DDPStrategy" and record["backend"] == "gloo"


def test_ranks_read_disjoint_shards_of_the_training_set(ddp_run):
    _, meta, _ = ddp_run
    train_rows = set(meta[0]["train_rows"])
    assert train_rows == set(meta[1]["train_rows"]) and len(train_rows) >= 8
    epochs = meta[0]["epochs"]
    assert epochs == 2
    # DistributedSampler pads the index list to a multiple of the world size by repeating its first entries
    padding = -len(train_rows) % WORLD
    shards = []
    for record in meta:
        reads = record["train_reads"]
        assert reads and len(reads) % epochs == 0
        per_epoch = len(reads) // epochs
        assert per_epoch <= -(-len(train_rows) // WORLD)  # at most ceil(n / world) rows: a shard, not everything
        shards.append([reads[e * per_epoch:(e + 1) * per_epoch] for e in range(epochs)])
        assert set(reads) <= train_rows  # no validation (or any other) row is trained on
    assert len(shards[0][0]) == len(shards[1][0])  # same number of steps on both ranks (else DDP would hang)
    for epoch in range(epochs):
        first, second = set(shards[0][epoch]), set(shards[1][epoch])
        assert len(first & second) <= padding, f"epoch {epoch}: rows {sorted(first & second)} read by both ranks"
        assert len(first | second) >= len(shards[0][epoch]) + len(shards[1][epoch]) - padding
    # a new shuffle per epoch
    assert shards[0][0] != shards[0][1]


def test_ranks_end_with_identical_weights(ddp_run):
    _, _, (first, second) = ddp_run
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
    initial = {k: v for k, v in first.items() if v.is_floating_point()}
    assert initial  # the comparison covered real parameters


def test_validation_figures_are_reduced_over_both_ranks(ddp_run):
    """Each rank validates half of the validation set; the logged loss and accuracy are those of the whole set."""
    _, meta, _ = ddp_run
    first, second = meta[0]["val_figures"], meta[1]["val_figures"]
    assert set(first) == {"val_loss", "val_acc"}
    assert first == second


def test_rank_zero_writes_one_finished_run_folder(ddp_run):
    run_dir, _, _ = ddp_run
    from pneumoscope.models import load_classifier

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["device"] == "cpu"
    _, meta = load_classifier(run_dir)
    assert meta["architecture"] == "simple_cnn"
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + one row per epoch, not one per rank


def test_multi_node_keys_reach_the_trainer(tiny_config, tmp_path):
    """trainer.devices / num_nodes / strategy as in the multi-node torchrun recipe (docs/PERFORMANCE.md); the Trainer
    is only built here, not launched."""
    from pneumoscope.training.run import _trainer

    config = tiny_config(trainer={"device": "cpu", "devices": 2, "num_nodes": 3, "strategy": "ddp"})
    trainer = _trainer(config, tmp_path, "cpu", progress=False, on_epoch=None)
    assert trainer.num_devices == 2 and trainer.num_nodes == 3
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    assert trainer.strategy.distributed_sampler_kwargs["num_replicas"] == 6
