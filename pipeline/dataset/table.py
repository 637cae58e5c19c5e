"""The in-memory table: a split decoded once into one uint8 tensor, served by gathering indices.

With `cache="memory"`, later epochs never touch the disk or parse a record: each batch is one
gather of shuffled indices from the table, one copy per image per epoch, and the shuffle is
global (a permutation of the whole split every epoch).
"""

from __future__ import annotations

import tensorflow as tf

from pipeline.core import schema
from pipeline.dataset.options import DatasetError
from pipeline.dataset.streaming import AUTOTUNE, IN_ORDER_BATCH, read_shards


def load_table(files, manifest, count, *, skip_damaged=False):
    """Decode every record of `files` once into a uint8 [N, 3, H, W] and an int64 [N] variable.

    Peak memory while loading is twice the table (the parsed batches, then their concatenation);
    slice-assigning into a preallocated variable avoids that on paper but copies the whole
    variable on every assignment (measured: ~1 s per batch for a 220 MB table).
    """
    # Read in shard order (the table's row order is the records' order, which evaluation
    # keeps); the batched parse is the costly part and runs in parallel.
    records = read_shards(files, schema.tf_compression_type(manifest.compression), skip_damaged)
    image_shape = manifest.image_shape
    batches = records.batch(IN_ORDER_BATCH).map(
        lambda r: schema.parse_batch(r, image_shape), num_parallel_calls=AUTOTUNE).prefetch(2)
    image_parts, label_parts = [], []
    for batch_images, batch_labels in batches:
        image_parts.append(batch_images)
        label_parts.append(batch_labels)
    loaded = sum(int(part.shape[0]) for part in label_parts)
    if loaded != count:
        raise DatasetError(f"the shards hold {loaded} records, the manifest says {count}")
    # Variables, not tensors: a tensor captured by a tf.data function is copied into the
    # function's graph as a constant (measured: 8 s for a 2.3 GB table), a variable is not.
    images = tf.Variable(tf.concat(image_parts, axis=0), trainable=False, name="image_table")
    del image_parts
    labels = tf.Variable(tf.concat(label_parts, axis=0), trainable=False, name="label_table")
    return images, labels


def table_batches(images, labels, batch_size, *, training, seed):
    """Batches gathered from the table by (shuffled) index: one copy per image, global shuffle."""
    count = int(labels.shape[0])
    indices = tf.data.Dataset.range(count)
    if training:
        # A full-size buffer of int64 indices is cheap (8 bytes each) and shuffles globally.
        indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    indices = indices.batch(batch_size, drop_remainder=training)
    return indices.map(lambda i: (tf.gather(images, i), tf.gather(labels, i)),
                       num_parallel_calls=AUTOTUNE)
