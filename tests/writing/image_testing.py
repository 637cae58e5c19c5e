"""What the image decoding tests share: images saved with Pillow, and checks of the output."""

import numpy as np
import pytest
from PIL import Image

from pipeline.writing.images import RejectedImage, decode_image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def save(path, pixels_or_image, **kwargs):
    """Save an array (HWC / HW) or an Image to `path`; returns the path as str."""
    img = pixels_or_image
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    img.save(path, **kwargs)
    return str(path)


def random_rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def hwc(chw):
    """The decoded CHW array back as HWC, to compare with the source pixels."""
    return chw.transpose(1, 2, 0)


def assert_layout(out, size):
    assert isinstance(out, np.ndarray)
    assert out.shape == (3, size, size)
    assert out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]


def reject_reason(file, size=8, resize="squash"):
    with pytest.raises(RejectedImage) as info:
        decode_image(str(file), size, resize)
    assert info.value.reason == str(info.value)
    return info.value.reason
