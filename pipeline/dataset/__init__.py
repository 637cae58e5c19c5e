"""The reading stage: shards in, batches of uint8 CHW images out (`make_dataset`).

    from pipeline.dataset import make_dataset
    train = make_dataset("workspace/shards/digits", "train", batch_size=256, seed=0)

    reader.py     make_dataset and build_dataset: checks, the cache choice, the steps after
                  the batches (length, augmentation, service, prefetch)
    options.py    ReadOptions, DamagedShards, ServiceSettings: what the reader is asked
    streaming.py  records from disk every epoch: file order, interleave, shuffle, batch, parse
    table.py      cache="memory": the split decoded once, batches gathered by index
    damaged.py    on_corrupt="skip": which records of a damaged split can still be read
    service.py    the tf.data service servers (python -m pipeline.service)

It imports the record format (pipeline.core) and the augmentation ops (pipeline.augment),
never the writer, the trainer or the tools.
"""

from pipeline.dataset.options import DamagedShards, DatasetError, ReadOptions, ServiceSettings
from pipeline.dataset.reader import batches_per_epoch, build_dataset, make_dataset
from pipeline.dataset.streaming import split_paths

__all__ = ["DamagedShards", "DatasetError", "ReadOptions", "ServiceSettings",
           "batches_per_epoch", "build_dataset", "make_dataset", "split_paths"]
