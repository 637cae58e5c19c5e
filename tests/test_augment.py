"""pipeline.augment: every op eagerly and inside tf.data.map, the spec parser, DevicePreprocess.

big_vision's rule: run each op both eagerly and in tf.data ("You'd be surprised how much these
two differ!"); `both()` does that and requires the two results to be identical.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline import augment

SEED = (3, 7)
K = 5  # classes in the label-mixing tests


def make_images(batch=8, height=8, width=8, dtype=np.uint8, seed=0, low=0, high=256):
    """Random uint8-valued pixels [B, 3, H, W]: no two windows or mirror images coincide."""
    rng = np.random.default_rng(seed)
    return rng.integers(low, high, (batch, 3, height, width)).astype(dtype)


def make_labels(batch=8, num_classes=K):
    return np.arange(batch, dtype=np.int64) % num_classes


def eager(op, images, labels, seed=SEED):
    out_images, out_labels = op(tf.constant(images), tf.constant(labels), tf.constant(seed))
    return np.asarray(out_images), np.asarray(out_labels)


def in_tf_data(op, images, labels, seed=SEED):
    """The op inside tf.data.map, with the batch size unknown (None) as in the reader."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(len(images))
    ds = ds.map(lambda x, y: op(x, y, tf.constant(seed, tf.int64)))
    assert ds.element_spec[0].shape[0] is None
    (out_images, out_labels), = ds.as_numpy_iterator()
    return out_images, out_labels


def both(op, images, labels, seed=SEED):
    """Runs `op` eagerly and inside tf.data; they must agree exactly. Returns the results."""
    out_images, out_labels = eager(op, images, labels, seed)
    data_images, data_labels = in_tf_data(op, images, labels, seed)
    np.testing.assert_array_equal(data_images, out_images)
    np.testing.assert_array_equal(data_labels, out_labels)
    assert out_images.dtype == images.dtype
    assert out_images.shape == images.shape
    return out_images, out_labels


# ---------------------------------------------------------------------------------------------
# flip_lr
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_flip_lr_mirrors_about_half_the_images(dtype):
    images, labels = make_images(64, dtype=dtype), make_labels(64)
    out, out_labels = both(augment.get_flip_lr(), images, labels)
    flipped = [np.array_equal(o, x[..., ::-1]) for o, x in zip(out, images)]
    kept = [np.array_equal(o, x) for o, x in zip(out, images)]
    assert all(f != k for f, k in zip(flipped, kept))  # every image is one or the other
    assert 0 < sum(flipped) < 64
    np.testing.assert_array_equal(out_labels, labels)


def test_flip_lr_same_images_flip_whatever_the_dtype():
    images = make_images(32)
    as_uint8, _ = eager(augment.get_flip_lr(), images, make_labels(32))
    as_float, _ = eager(augment.get_flip_lr(), images.astype(np.float32), make_labels(32))
    np.testing.assert_array_equal(as_float, as_uint8.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# random_crop
# ---------------------------------------------------------------------------------------------


def window_offsets(out, image, pad):
    """The (dy, dx) whose window of the zero-padded `image` equals `out`, by brute force."""
    padded = np.pad(image, [(0, 0), (pad, pad), (pad, pad)])
    _, height, width = image.shape
    return [
        (dy, dx)
        for dy, dx in itertools.product(range(2 * pad + 1), repeat=2)
        if np.array_equal(padded[:, dy : dy + height, dx : dx + width], out)
    ]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_crop_is_a_window_of_the_zero_padded_image(dtype):
    pad = 2
    images = make_images(32, height=8, width=6, dtype=dtype, low=1)  # no zeros but the padding
    out, _ = both(augment.get_random_crop(pad), images, make_labels(32))
    offsets = []
    for o, x in zip(out, images):
        found = window_offsets(o, x, pad)
        assert len(found) == 1, found
        offsets.append(found[0])
    assert len(set(offsets)) > 5  # per-image offsets, not one per batch
    assert {dy for dy, _ in offsets} | {dx for _, dx in offsets} >= {0, 2 * pad}  # extremes occur


def test_random_crop_uint8_and_float_paths_agree():
    # uint8 crops columns by grouping images by offset, float by a gather: same pixels.
    images = make_images(64, height=8, width=8)
    as_uint8, _ = eager(augment.get_random_crop(3), images, make_labels(64))
    as_float, _ = eager(augment.get_random_crop(3), images.astype(np.float32), make_labels(64))
    np.testing.assert_array_equal(as_float, as_uint8.astype(np.float32))


def test_random_crop_pad_zero_is_identity():
    images = make_images()
    out, _ = both(augment.get_random_crop(pad=0), images, make_labels())
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("pad", [-1, 1.5, "8"])
def test_random_crop_rejects_bad_pad(pad):
    with pytest.raises(ValueError, match="random_crop: pad"):
        augment.get_random_crop(pad)


# ---------------------------------------------------------------------------------------------
# random_resized_crop
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_resized_crop_shape_dtype_and_change(dtype):
    images = make_images(16, height=16, width=12, dtype=dtype)
    out, _ = both(augment.get_random_resized_crop(), images, make_labels(16))
    assert out.min() >= 0 and out.max() <= 255
    changed = [not np.array_equal(o, x) for o, x in zip(out, images)]
    assert sum(changed) == 16


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_resized_crop_full_square_box_is_identity(dtype):
    images = make_images(8, height=16, width=16, dtype=dtype)
    op = augment.get_random_resized_crop(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out, _ = both(op, images, make_labels())
    np.testing.assert_allclose(out, images, atol=1e-3)


def test_random_resized_crop_small_scale_zooms_in():
    # A box of 1/16 the area, resized back, varies less than the whole image.
    images = make_images(16, height=16, width=16, dtype=np.float32)
    op = augment.get_random_resized_crop(scale=(1 / 16, 1 / 16), ratio=(1.0, 1.0))
    out, _ = both(op, images, make_labels(16))
    assert np.abs(np.diff(out, axis=3)).mean() < 0.5 * np.abs(np.diff(images, axis=3)).mean()


def test_random_resized_crop_rejects_bad_ranges():
    with pytest.raises(ValueError, match="random_resized_crop: scale"):
        augment.get_random_resized_crop(scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="random_resized_crop: ratio"):
        augment.get_random_resized_crop(ratio=(2.0, 1.0))


# ---------------------------------------------------------------------------------------------
# brightness / contrast
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_brightness_scales_each_image_by_one_factor(dtype):
    images = make_images(16, dtype=dtype, low=40, high=200)  # x * 1.2 < 255: nothing clips
    out, _ = both(augment.get_brightness(max_delta=0.2), images, make_labels(16))
    factors = out.astype(np.float64) / images
    per_image = factors.reshape(16, -1)
    assert np.all(per_image.min(1) >= 0.8 - 0.5 / 40) and np.all(per_image.max(1) <= 1.2 + 0.5 / 40)
    # One factor per image (up to rounding to uint8), different between images.
    spread = per_image.max(1) - per_image.min(1)
    assert np.all(spread <= (1.0 / 40 if dtype == np.uint8 else 1e-5))
    assert np.ptp(np.median(per_image, axis=1)) > 0.05


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_brightness_and_contrast_stay_in_range(dtype):
    images = make_images(16, dtype=dtype)
    for op in (augment.get_brightness(max_delta=1.0), augment.get_contrast(0.0, 3.0)):
        out, _ = both(op, images, make_labels(16))
        assert out.min() >= 0 and out.max() <= 255
        assert np.any(out == 255) and np.any(out == 0)  # clipped, not wrapped around


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_zero_strength_brightness_and_contrast_are_identity(dtype):
    images = make_images(16, dtype=dtype)
    for op in (augment.get_brightness(max_delta=0.0), augment.get_contrast(1.0, 1.0)):
        out, _ = both(op, images, make_labels(16))
        np.testing.assert_array_equal(out, images)


def test_contrast_scales_deviation_around_each_image_mean():
    images = make_images(16, dtype=np.float32, low=64, high=192)  # no clipping at 1.2x
    out, _ = both(augment.get_contrast(0.8, 1.2), images, make_labels(16))
    mean_in = images.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), mean_in, atol=1e-3)
    factor = out.std(axis=(1, 2, 3)) / images.std(axis=(1, 2, 3))
    assert np.all((factor > 0.8 - 1e-4) & (factor < 1.2 + 1e-4))
    assert np.ptp(factor) > 0.05


# ---------------------------------------------------------------------------------------------
# mixup / cutmix
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_mixup_mixes_images_and_labels_with_one_lambda(dtype):
    images, labels = make_images(8, dtype=dtype), make_labels(8, num_classes=8)
    out, soft = both(augment.get_mixup(alpha=1.0, num_classes=8), images, labels)
    assert soft.dtype == np.float32 and soft.shape == (8, 8)
    np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-6)
    partner = images[::-1]
    slack = 0 if dtype == np.uint8 else 1e-3  # float rounding; uint8 rounds to an integer between
    assert np.all(out >= np.minimum(images, partner) - slack)
    assert np.all(out <= np.maximum(images, partner) + slack)
    lam = soft[0, labels[0]]
    assert 0.0 < lam < 1.0
    np.testing.assert_allclose(soft[np.arange(8), labels], lam, atol=1e-6)  # one lam per batch
    expected = lam * images.astype(np.float32) + (1 - lam) * partner
    np.testing.assert_allclose(out, expected, atol=0.5 if dtype == np.uint8 else 1e-3)


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_label_mixing_needs_num_classes_for_int_labels(name):
    op = augment.OPS[name]()
    with pytest.raises(ValueError, match=rf"num_classes.*{name}\(num_classes=K\)"):
        op(tf.constant(make_images()), tf.constant(make_labels()), tf.constant(SEED))


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_label_mixing_accepts_soft_labels_without_num_classes(name):
    soft_in = np.eye(K, dtype=np.float32)[make_labels()]
    _, soft = both(augment.OPS[name](), make_images(), soft_in)
    np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-6)


def test_cutmix_pastes_a_box_from_the_partner_weighted_by_its_area():
    batch, height, width = 16, 8, 8
    images, labels = make_images(batch, height, width), make_labels(batch, num_classes=batch)
    out, soft = both(augment.get_cutmix(alpha=1.0, num_classes=batch), images, labels)
    np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-6)
    partner = images[::-1]
    from_partner = np.all(out == partner, axis=1) & ~np.all(out == images, axis=1)  # [B, H, W]
    from_self = np.all(out == images, axis=1)
    assert np.all(from_partner | from_self)  # every pixel comes from one of the two
    pasted = 0
    for i in range(batch):
        mask = from_partner[i]
        rows, cols = mask.any(1), mask.any(0)
        np.testing.assert_array_equal(mask, np.outer(rows, cols))  # a rectangle
        area = mask.mean()
        np.testing.assert_allclose(soft[i, labels[batch - 1 - i]], area, atol=1e-6)
        np.testing.assert_allclose(soft[i, labels[i]], 1 - area, atol=1e-6)
        pasted += area > 0
    assert pasted > batch // 2


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------

EVERY_OP = "random_resized_crop|random_crop(2)|flip_lr|brightness|contrast|mixup|cutmix"


def test_same_seed_same_output_other_seed_other_output():
    op = augment.build(EVERY_OP, num_classes=K)
    images, labels = make_images(16, height=16, width=16), make_labels(16)
    first = both(op, images, labels, seed=(1, 2))
    again = eager(op, images, labels, seed=(1, 2))
    other = eager(op, images, labels, seed=(1, 3))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_parallel_map_output_depends_only_on_the_batch_index():
    # The reader's seed is [base_seed, batch_index]: however many parallel calls run and in
    # whatever order they finish, batch i is augmented the same way.
    op = augment.build(EVERY_OP, num_classes=K)
    images, labels = make_images(8, height=16, width=16), make_labels(8)
    ds = (
        tf.data.Dataset.from_tensors((images, labels))
        .repeat(6)
        .enumerate()
        .map(
            lambda i, xy: (i, *op(xy[0], xy[1], tf.stack([tf.constant(5, tf.int64), i]))),
            num_parallel_calls=4,
            deterministic=False,
        )
    )
    outputs = {int(i): (x, y) for i, x, y in ds.as_numpy_iterator()}
    assert sorted(outputs) == list(range(6))
    for i, (x, y) in outputs.items():
        expected_x, expected_y = eager(op, images, labels, seed=(5, i))
        np.testing.assert_array_equal(x, expected_x)
        np.testing.assert_array_equal(y, expected_y)
    assert not np.array_equal(outputs[0][0], outputs[1][0])


def test_ops_work_on_a_batch_of_one_or_none():
    op = augment.build(EVERY_OP, num_classes=K)
    out, soft = both(op, make_images(1), make_labels(1))
    assert out.shape == (1, 3, 8, 8) and soft.shape == (1, K)
    out, soft = eager(op, make_images(0), make_labels(0))  # a filter may leave a batch empty
    assert out.shape == (0, 3, 8, 8) and soft.shape == (0, K)


XLA_SPECS = ["flip_lr", "random_crop(pad=3)", "brightness", "contrast",
             "random_crop(pad=2)|flip_lr", "flip_lr|random_crop(pad=2)|brightness"]


@pytest.mark.parametrize("spec", XLA_SPECS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("batch", [1, 8, 0])
def test_xla_kernels_give_the_same_bytes_as_tensorflow_kernels(spec, dtype, batch):
    images, labels = make_images(batch, dtype=dtype), make_labels(batch)
    plain = augment.build(spec, jit_compile=False)
    compiled = augment.build(spec)  # jit_compile=True: XLA, random_crop's window gather
    expected, _ = eager(plain, images, labels)
    if batch:
        out, out_labels = both(compiled, images, labels)
    else:  # an empty batch takes the TensorFlow kernel (no image to slice a window from)
        out, out_labels = eager(compiled, images, labels)
        # With the batch size unknown until run time, as in tf.data, the choice is a tf.cond.
        graph = tf.function(lambda x, y: compiled(x, y, tf.constant(SEED)), input_signature=[
            tf.TensorSpec([None, 3, 8, 8], dtype), tf.TensorSpec([None], tf.int64)])
        assert graph(images, labels)[0].shape == images.shape
    if dtype == np.float32 and ("brightness" in spec or "contrast" in spec):
        # XLA may fuse float arithmetic differently: equal to the last bit or two.
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)
    else:
        np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out_labels, labels)


def test_every_op_but_the_listed_ones_compiles_with_xla():
    assert augment.NO_XLA_OPS == {"random_resized_crop", "mixup", "cutmix"}
    assert {name for spec in XLA_SPECS for name, _ in augment.parse_spec(spec)} == (
        set(augment.OPS) - augment.NO_XLA_OPS)


# ---------------------------------------------------------------------------------------------
# parse_spec / build
# ---------------------------------------------------------------------------------------------


def test_parse_spec_string_list_and_positional_forms():
    expected = [("random_crop", {"pad": 8}), ("flip_lr", {})]
    assert augment.parse_spec("random_crop(pad=8)|flip_lr") == expected
    assert augment.parse_spec(" random_crop(8) | flip_lr ") == expected
    assert augment.parse_spec(["random_crop(pad=8)", "flip_lr"]) == expected
    assert augment.parse_spec(["random_crop(8)|flip_lr", ""]) == expected
    assert augment.parse_spec("random_resized_crop(scale=(0.25, 1.0), ratio=[0.5, 2])") == [
        ("random_resized_crop", {"scale": (0.25, 1.0), "ratio": [0.5, 2]})
    ]
    assert augment.parse_spec(augment.DEFAULT_TRAIN_AUGMENT) == [
        ("random_crop", {"pad": 16}),
        ("flip_lr", {}),
    ]


@pytest.mark.parametrize("spec", [None, "", "  ", [], ()])
def test_empty_spec_is_identity(spec):
    assert augment.parse_spec(spec) == []
    op = augment.build(spec)
    images, labels = make_images(), make_labels()
    out, out_labels = both(op, images, labels)
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(out_labels, labels)


def test_unknown_op_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown augment op 'flip_ud'") as err:
        augment.parse_spec("random_crop(4)|flip_ud")
    for name in augment.OPS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("random_crop(pad=4, size=3)", "'random_crop'.*unexpected keyword argument 'size'"),
        ("random_crop(4, 5)", "'random_crop'.*too many positional"),
        ("random_resized_crop(ratio=(3/4, 4/3))", "'random_resized_crop'.*not a literal"),
        ("random_crop(pad=os.getcwd())", "'random_crop'.*not a literal"),
        ("random_crop(pad=4", "cannot parse"),
        ("random_crop(pad=4).x", "cannot parse"),
    ],
)
def test_bad_specs_name_the_op_and_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        augment.parse_spec(spec)


def test_build_validates_values_when_built():
    with pytest.raises(ValueError, match="random_crop: pad=-3"):
        augment.build("random_crop(-3)")


def test_build_offers_common_kwargs_only_to_ops_that_take_them():
    # flip_lr takes no num_classes (it would raise TypeError if offered one); mixup gets it.
    _, soft = both(augment.build("flip_lr|mixup", num_classes=K), make_images(), make_labels())
    assert soft.shape == (8, K)
    # A value written in the spec wins over the common one.
    op = augment.build("cutmix(num_classes=3)", num_classes=K)
    _, soft = both(op, make_images(), make_labels(num_classes=3))
    assert soft.shape == (8, 3)


def test_build_seeds_op_i_with_fold_in_of_i():
    images, labels = make_images(16), make_labels(16)
    composed, _ = eager(augment.build("brightness|flip_lr"), images, labels)
    seed = tf.constant(SEED, tf.int64)
    step = augment.get_brightness()(images, labels, tf.random.experimental.stateless_fold_in(
        seed, tf.constant(0, tf.int64), alg=augment.RNG_ALG))[0]
    step = augment.get_flip_lr()(step, labels, tf.random.experimental.stateless_fold_in(
        seed, tf.constant(1, tf.int64), alg=augment.RNG_ALG))[0]
    np.testing.assert_array_equal(composed, step)


# ---------------------------------------------------------------------------------------------
# DevicePreprocess
# ---------------------------------------------------------------------------------------------

MEAN = (120.0, 110.5, 100.25)
STD = (60.0, 55.5, 50.0)


def normalised(images):
    mean = np.array(MEAN, np.float32)[None, :, None, None]
    std = np.array(STD, np.float32)[None, :, None, None]
    return (images.astype(np.float32) - mean) / std


def test_device_preprocess_normalises_and_transposes():
    images = make_images(4, height=8, width=6)
    last = augment.DevicePreprocess(MEAN, STD)(images)
    first = augment.DevicePreprocess(MEAN, STD, data_format="channels_first")(images)
    assert last.shape == (4, 8, 6, 3) and first.shape == (4, 3, 8, 6)
    assert last.dtype == "float32"
    np.testing.assert_allclose(np.asarray(first), normalised(images), rtol=1e-6, atol=0)
    np.testing.assert_array_equal(np.asarray(last), np.transpose(np.asarray(first), (0, 2, 3, 1)))
    layer = augment.DevicePreprocess(MEAN, STD)
    assert layer.compute_output_shape((None, 3, 8, 6)) == (None, 8, 6, 3)


def test_device_preprocess_augments_only_in_training():
    images = make_images(16, height=8, width=8, low=1)
    layer = augment.DevicePreprocess(
        MEAN, STD, data_format="channels_first", augment="random_crop(2)|flip_lr", seed=0
    )
    for training in (None, False):
        np.testing.assert_allclose(np.asarray(layer(images, training=training)), normalised(images),
                                   rtol=1e-6)
    trained = np.asarray(layer(images, training=True))
    changed = [not np.allclose(t, n) for t, n in zip(trained, normalised(images))]
    assert sum(changed) > 8


@pytest.mark.parametrize("spec", ["mixup", "flip_lr|cutmix(num_classes=3)"])
def test_device_preprocess_refuses_label_ops(spec):
    with pytest.raises(ValueError, match="tf.data pipeline instead"):
        augment.DevicePreprocess(MEAN, STD, augment=spec)


def test_device_preprocess_rejects_bad_arguments():
    with pytest.raises(ValueError, match="data_format"):
        augment.DevicePreprocess(MEAN, STD, data_format="NHWC")
    with pytest.raises(ValueError, match="std > 0"):
        augment.DevicePreprocess(MEAN, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="unknown augment op"):
        augment.DevicePreprocess(MEAN, STD, augment="flip")
    with pytest.raises(ValueError, match=r"expects \[B, 3, H, W\] channels-first"):
        augment.DevicePreprocess(MEAN, STD)(np.zeros((2, 8, 8, 3), np.uint8))  # NHWC by mistake


def test_device_preprocess_opts_out_of_xla_only_for_ops_without_kernels():
    assert augment.DevicePreprocess(MEAN, STD, augment=augment.DEFAULT_TRAIN_AUGMENT).supports_jit
    assert not augment.DevicePreprocess(MEAN, STD, augment="random_resized_crop").supports_jit


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def small_model(augment_spec=augment.DEFAULT_TRAIN_AUGMENT, seed=0):
    inputs = keras.Input((3, 8, 8), dtype="uint8")
    x = augment.DevicePreprocess(MEAN, STD, augment=augment_spec, seed=seed, name="pre")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(K)(x))


def test_device_preprocess_in_model_fit_draws_new_seeds_each_step(tmp_path):
    model = small_model()
    model.compile(optimizer="adam", loss=LOSS)
    layer = model.get_layer("pre")
    state = np.asarray(layer._seed_generator.state.value).copy()
    history = model.fit(make_images(16), make_labels(16), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(np.asarray(layer._seed_generator.state.value), state)

    # Two training calls inside one graph function augment differently.
    train_call = tf.function(lambda x: layer(x, training=True))
    images = make_images(8)
    assert not np.array_equal(np.asarray(train_call(images)), np.asarray(train_call(images)))

    # Save / reload: same layer config, same inference output.
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.get_layer("pre").get_config() == layer.get_config()
    np.testing.assert_array_equal(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0)
    )


def test_device_preprocess_fits_under_xla():
    # On a GPU, Keras compiles fit with XLA by default ("auto"): the allowed ops must compile.
    model = small_model()
    model.compile(optimizer="sgd", loss=LOSS, jit_compile=True)
    assert model.jit_compile
    model.fit(make_images(8), make_labels(8), batch_size=8, epochs=1, verbose=0)


def test_device_preprocess_config_round_trip():
    layer = augment.DevicePreprocess(MEAN, STD, data_format="channels_first",
                                     augment=["random_crop(2)", "flip_lr"], seed=3, num_classes=K)
    clone = augment.DevicePreprocess.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    images = make_images(4)
    np.testing.assert_array_equal(np.asarray(clone(images)), np.asarray(layer(images)))
