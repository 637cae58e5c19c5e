"""Plain Keras on make_dataset, with nothing of ours in the model: the README's recipe run as
written (on a small dataset), and data_format="channels_last" batches ([B, H, W, 3], the layout
of keras.utils.image_dataset_from_directory) on every read path, the same pixels as the
channels-first batches transposed."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, write_labeled_dataset
from pipeline import dataset, errors
from pipeline.core import schema

BATCH = 4
# Every way make_dataset reads a local split (the tf.data service: test_service.py; a dataset
# with features: test_features.py). "file" is a tf.data cache file of the streamed records.
READS = {"random": dict(access="random"), "memory": dict(cache="memory"),
         "stream": dict(access="stream"), "file": dict(cache="file"), "gzip": {},
         "to_device": dict(to_device="/cpu:0")}
# Ops the reader fuses into its copy (random access) and ops run on the batch: all channels-first.
AUGMENT = "random_crop(pad=2)|flip_lr|brightness(0.3)"


def readme_recipe() -> str:
    with open(f"{REPO_ROOT}/README.md", encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    [recipe] = [block for block in blocks if block.startswith("# plain Keras")]
    return recipe


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """{"plain", "gzip"}: 30 labeled 8x8 images, 2 train shards and 1 val shard each."""
    root = tmp_path_factory.mktemp("keras")
    return {compression: write_labeled_dataset(root, 30, compression.lower(), shards=2,
                                               val_shards=1, val_fraction=0.2,
                                               compression=compression)
            for compression in ("NONE", "GZIP")}


@pytest.mark.slow
def test_the_readme_recipe_trains_a_keras_application(tmp_path):
    data_dir = write_labeled_dataset(tmp_path, 90, "shards", side=32, shards=2, val_shards=1,
                                     val_fraction=0.2)
    recipe = readme_recipe()
    assert '"workspace/shards/digits"' in recipe
    assert "transpose" not in recipe  # the reader hands out Keras' layout itself
    namespace = {}
    exec(recipe.replace('"workspace/shards/digits"', repr(data_dir)), namespace)
    history = namespace["model"].history.history
    assert len(history["loss"]) == 1 and history["loss"][0] > 0


def test_a_plain_keras_model_trains_on_channels_last_batches(shards):
    data_dir = shards["NONE"]
    manifest = schema.read_manifest(data_dir)
    channels, height, width = manifest.image_shape
    train = dataset.make_dataset(data_dir, "train", batch_size=BATCH, seed=0,
                                 data_format="channels_last")
    inputs = keras.Input((height, width, channels))
    features = keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(manifest.num_classes)(
        keras.layers.GlobalAveragePooling2D()(features))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(train, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False).history
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])


def _read(data_dir, training, options, data_format):
    tf.random.set_seed(None)  # streaming's order also depends on the global seed
    batches = dataset.make_dataset(data_dir, "train", batch_size=BATCH, training=training,
                                   seed=5, deterministic=True, data_format=data_format,
                                   **options)
    return batches.element_spec, [(x.numpy(), y.numpy()) for x, y in batches]


@pytest.mark.parametrize("training, augment", [(True, None), (True, AUGMENT), (False, None)],
                         ids=["train", "train-augmented", "eval"])
@pytest.mark.parametrize("read", sorted(READS))
def test_channels_last_is_channels_first_transposed_on_every_read(shards, tmp_path, read,
                                                                  training, augment):
    data_dir = shards["GZIP" if read == "gzip" else "NONE"]
    _, height, width = schema.read_manifest(data_dir).image_shape

    def read_as(data_format):
        options = {**READS[read], "augment": augment}
        if read == "file":
            options["cache"] = str(tmp_path / data_format)
        return _read(data_dir, training, options, data_format)

    first_spec, first = read_as("channels_first")
    last_spec, last = read_as("channels_last")
    # Keras builds its graph from the static shape: H, W and 3 known, B when batches are full.
    assert last_spec[0].shape.as_list() == [BATCH if training else None, height, width, 3]
    assert last_spec[0].dtype == tf.uint8 and last_spec[1] == first_spec[1]
    assert first_spec[0].shape.as_list()[1:] == [3, height, width]
    assert len(last) == len(first) > 0
    for (images, labels), (want_images, want_labels) in zip(last, first):
        np.testing.assert_array_equal(images, np.transpose(want_images, (0, 2, 3, 1)))
        np.testing.assert_array_equal(labels, want_labels)


@pytest.mark.parametrize("value", ["NHWC", "channels-last", None])
def test_an_unknown_data_format_is_one_line_naming_both(shards, value):
    with pytest.raises(errors.ConfigError) as raised:
        dataset.make_dataset(shards["NONE"], "train", batch_size=BATCH, data_format=value)
    message = str(raised.value)
    assert "\n" not in message and repr(value) in message
    assert "'channels_first'" in message and "'channels_last'" in message
