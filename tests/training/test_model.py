"""pipeline.model: the ResNets are the published architectures and take uint8 CHW batches."""

import keras
import numpy as np
import pytest

from pipeline.training import model

MEAN, STD = (120.0, 110.0, 100.0), (60.0, 55.0, 50.0)
# Trainable parameters of torchvision's resnet18/34/50 (1000 classes): the same architecture
# (v1.5) has exactly these.
TORCHVISION_PARAMETERS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032}


def _trainable(net):
    return sum(int(np.prod(w.shape)) for w in net.trainable_weights)


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMETERS))
def test_parameter_counts_match_the_reference_architectures(depth):
    net = model.build_resnet(depth=depth, num_classes=1000, image_shape=(3, 224, 224),
                             mean=MEAN, std=STD, data_format="channels_last")
    assert _trainable(net) == TORCHVISION_PARAMETERS[depth]


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_uint8_chw_in_float32_logits_out(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        net = model.build_resnet(depth=10, num_classes=7, image_shape=(3, 32, 32), mean=MEAN,
                                 std=STD, width=4, stem="small", input_pool=2)
        images = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
        logits = net(images, training=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert net.input.dtype == "uint8" and tuple(net.input.shape) == (None, 3, 32, 32)
    assert logits.shape == (5, 7) and logits.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(logits)))


def test_weight_decay_regularises_every_kernel_and_nothing_else():
    net = model.build_resnet(depth=10, num_classes=3, image_shape=(3, 16, 16), mean=MEAN,
                             std=STD, width=4, stem="small", weight_decay=1e-4)
    kernels = [layer for layer in net.layers
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(net.losses) == len(kernels) > 0
    plain = model.build_resnet(depth=10, num_classes=3, image_shape=(3, 16, 16), mean=MEAN,
                               std=STD, width=4, stem="small")
    assert not plain.losses


def test_residual_branches_start_at_zero():
    net = model.build_resnet(depth=18, num_classes=3, image_shape=(3, 32, 32), mean=MEAN,
                             std=STD, width=4)
    last_bns = [layer for layer in net.layers if layer.name.endswith("_b_bn")]
    assert len(last_bns) == 8  # one per basic block
    assert all(np.all(np.asarray(layer.gamma) == 0) for layer in last_bns)


def test_bad_arguments_name_the_choices():
    common = dict(num_classes=3, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match=r"depth=20: choose one of \[10, 18, 34, 50\]"):
        model.build_resnet(depth=20, image_shape=(3, 8, 8), **common)
    with pytest.raises(ValueError, match="stem='tiny'"):
        model.build_resnet(depth=10, image_shape=(3, 8, 8), stem="tiny", **common)
    with pytest.raises(ValueError, match="input_pool=3 .* divide"):
        model.build_resnet(depth=10, image_shape=(3, 8, 8), input_pool=3, **common)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        model.build_resnet(depth=10, image_shape=(8, 8), **common)
    with pytest.raises(ValueError, match="data_format='NCHW'"):
        model.build_resnet(depth=10, image_shape=(3, 8, 8), data_format="NCHW", **common)
    assert model.resolve_data_format("auto") == "channels_last"  # no GPU here
