"""pipeline.augment.spec: composed ops are deterministic, XLA gives the same bytes, specs parse."""

import numpy as np
import pytest
import tensorflow as tf

from op_testing import K, SEED, both, eager, make_images, make_labels
from pipeline import augment
from pipeline.augment import geometric, photometric


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------

EVERY_OP = ("random_resized_crop|random_crop(2)|flip_lr|flip_ud|rotate|brightness|contrast|"
            "saturation|hue|random_erasing|identity|mixup|cutmix")


@pytest.mark.slow
def test_same_seed_same_output_other_seed_other_output():
    op = augment.build(EVERY_OP, num_classes=K)
    images, labels = make_images(16, height=16, width=16), make_labels(16)
    first = both(op, images, labels, seed=(1, 2))
    again = eager(op, images, labels, seed=(1, 2))
    other = eager(op, images, labels, seed=(1, 3))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.slow
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


@pytest.mark.slow
def test_ops_work_on_a_batch_of_one_or_none():
    op = augment.build(EVERY_OP, num_classes=K)
    out, soft = both(op, make_images(1), make_labels(1))
    assert out.shape == (1, 3, 8, 8) and soft.shape == (1, K)
    out, soft = eager(op, make_images(0), make_labels(0))  # a filter may leave a batch empty
    assert out.shape == (0, 3, 8, 8) and soft.shape == (0, K)


XLA_SPECS = ["flip_lr", "random_crop(pad=3)", "brightness", "contrast",
             "random_crop(pad=2)|flip_lr", "flip_lr|random_crop(pad=2)|brightness", "identity",
             "flip_ud", "rotate(degrees=30)", "rotate(interpolation='nearest')", "saturation",
             "hue", "random_erasing(probability=0.5)", "trivial_augment"]
# Ops whose float32 arithmetic XLA may fuse differently (resampling and colour maths).
FLOAT_MATH_OPS = ("brightness", "contrast", "rotate", "saturation", "hue", "trivial_augment")


@pytest.mark.parametrize("spec", XLA_SPECS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("batch", [1, 8, 0])
@pytest.mark.slow
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
    if dtype == np.float32 and any(name in spec for name in FLOAT_MATH_OPS):
        # XLA may fuse float arithmetic differently: equal to the last bit or two (rotate and
        # hue go through cos/sin and HSV, a few ulps of 255).
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-3)
    else:
        np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out_labels, labels)


def test_every_op_but_the_listed_ones_compiles_with_xla():
    assert augment.NO_XLA_OPS == {"random_resized_crop", "resize", "center_crop", "mixup", "cutmix"}
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
    with pytest.raises(ValueError, match="unknown augment op 'flip_diagonal'") as err:
        augment.parse_spec("random_crop(4)|flip_diagonal")
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
    step = photometric.get_brightness()(images, labels, tf.random.experimental.stateless_fold_in(
        seed, tf.constant(0, tf.int64), alg=augment.RNG_ALG))[0]
    step = geometric.get_flip_lr()(step, labels, tf.random.experimental.stateless_fold_in(
        seed, tf.constant(1, tf.int64), alg=augment.RNG_ALG))[0]
    np.testing.assert_array_equal(composed, step)
