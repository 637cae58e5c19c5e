"""The reading stage: shards in, batches of uint8 CHW images out (`make_dataset`), or HWC
for a Keras model of one's own (data_format="channels_last").

    from pipeline.dataset import make_dataset
    train = make_dataset("workspace/shards/digits", "train", batch_size=256, seed=0)

    reader.py         make_dataset and build_dataset (from a read plan): checks, the steps
                      after the batches (service, prefetch); readable_records
    options.py        ReadOptions, DamagedShards, ServiceSettings: what the reader is asked
                      (data_format checked here); read_manifest (the manifest as a fold reads it)
    plan.py           plan_read and ReadPlan, made once per dataset: the manifest, this
                      pipeline's shards, the cache, the access (plan.positioned: whether a
                      run can start at any batch)
    access.py         which read (random access, the table, streaming), and the reason the
                      log line gives
    order.py          which records make batch g: a pure function of (seed, g); choose_order,
                      the global shuffle or windows of shards, and why
    indexed.py        batches by position: random access and the table (a pipeline each),
                      start_batch
    random_access.py  records read at their offsets straight into the batch, CRC checked,
                      each batch by all cores at once (threads running kernels.py)
    kernels.py        the per-record work compiled with numba, without the GIL: read, check,
                      crop and flip
    fused.py          which leading augmentation ops the reader does itself (random_crop,
                      random_resized_crop, flip_lr), with the ops' own random numbers
    table.py          cache="memory": the split decoded once, batches gathered by index
    streaming.py      records from disk every epoch: file order, interleave, shuffle, batch,
                      check, parse (compressed or remote shards, a tf.data service);
                      split_paths and split_labels (a split's paths or labels, in order)
    damaged.py        damaged records: what reading says, what on_corrupt="skip" still reads
    service.py        the tf.data service servers (python -m pipeline.service)

It imports the record format (pipeline.core) and the augmentation ops (pipeline.augment),
never the writer, the trainer or the tools.
"""

from pipeline.dataset.options import (DamagedShards, DatasetError, ReadOptions, ServiceSettings,
                                      read_manifest)
from pipeline.dataset.order import batches_per_epoch
from pipeline.dataset.plan import ReadPlan, plan_read
from pipeline.dataset.reader import build_dataset, make_dataset, readable_records
from pipeline.dataset.streaming import split_labels, split_paths

__all__ = ["DamagedShards", "DatasetError", "ReadOptions", "ReadPlan", "ServiceSettings",
           "batches_per_epoch", "build_dataset", "make_dataset", "plan_read", "read_manifest",
           "readable_records", "split_labels", "split_paths"]
