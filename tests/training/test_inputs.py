"""build_inputs: each split is planned once (pipeline.dataset.plan_read), and everything the run
asks of it comes from that plan: its steps, whether it can be positioned, its batches, every
leg's."""

import pytest

from conftest import count_read_plans, write_labeled_dataset
from pipeline.dataset import DamagedShards, ReadOptions
from pipeline.training import checkpoints, legs, loop
from pipeline.training.start import start_run

READS = {"random": ReadOptions(), "memory": ReadOptions(cache="memory"),
         "stream": ReadOptions(access="stream"),
         "skip": ReadOptions(damaged=DamagedShards("skip", 0.5))}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """24 labeled 8x8 images: 2 train shards, 1 val shard."""
    return write_labeled_dataset(tmp_path_factory.mktemp("inputs"), 24, "out", shards=2,
                                 val_shards=1, val_fraction=0.25)


@pytest.mark.parametrize("read", sorted(READS))
def test_each_split_is_planned_once(data_dir, tmp_path, monkeypatch, read):
    run = start_run(data_dir, str(tmp_path / "run"), train_split="train", val_split="val",
                    batch_size=4, epochs=2, seed=0, mixed_precision=False, freeze_epochs=1)
    planned = count_read_plans(monkeypatch)
    inputs = loop.build_inputs(run, READS[read], checkpoints.RunState(settings={}))
    assert planned == {"train": 1, "val": 1}
    assert len(inputs.legs) == 2  # the frozen epoch, then the rest: a fit each
    start = legs.start_batch_for(inputs.legs[1], inputs.unpositioned, "train", resumed=True)
    later = loop.train_input(run, inputs.train_plan, inputs.legs[1], start)
    assert planned == {"train": 1, "val": 1}
    assert later.element_spec == inputs.train.element_spec
