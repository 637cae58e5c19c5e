"""time_training_steps (the bench's and the profiler's training row): it trains on the reader,
with the batches prefetched into a device's memory and mixed precision as on an accelerator,
and leaves the global dtype policy as it found it."""

import keras
import pytest

from pipeline.training import timing


@pytest.mark.slow
def test_timed_steps_with_a_device_prefetch_and_mixed_precision(train_data_dir):
    data_dir = train_data_dir
    before = keras.mixed_precision.global_policy().name
    timer = timing.time_training_steps(
        data_dir, "train", batch_size=4, steps_per_epoch=4, seed=0, augment=None,
        mixed_precision=True, to_device="/cpu:0", depth=10, width=4, stem="small")
    assert timer.last_images_per_second > 0
    assert 0.0 <= timer.last_wait_fraction <= 1.0
    assert keras.mixed_precision.global_policy().name == before == "float32"
