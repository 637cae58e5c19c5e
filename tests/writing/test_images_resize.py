"""decode_image's resize modes: squash, center_crop and pad give the stored layout and pixels."""

import numpy as np
import pytest

from image_testing import BLUE, GREEN, RED, WHITE, assert_layout, hwc, random_rgb, save
from pipeline.writing.images import PAD_FILL, RESIZE_MODES, decode_image


# ---------------------------------------------------------------------------------------------
# Resize modes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resize", RESIZE_MODES)
@pytest.mark.parametrize("source_size", [(7, 7), (30, 10), (10, 30), (300, 200)])
@pytest.mark.parametrize("image_size", [1, 8, 33])
def test_output_layout(tmp_path, resize, source_size, image_size):
    width, height = source_size
    file = save(tmp_path / "x.png", random_rgb(height, width))
    out = decode_image(file, image_size, resize)
    assert_layout(out, image_size)


def test_squash_stretches_the_whole_image(tmp_path):
    # 20 x 10, red left half, blue right half -> 8 x 8, every row the same.
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = RED
    pixels[:, 10:] = BLUE
    out = hwc(decode_image(save(tmp_path / "x.png", pixels), 8, "squash"))
    assert (out == out[0]).all()
    assert (out[:, :3] == RED).all()
    assert (out[:, 5:] == BLUE).all()


def three_stripes(width, height, vertical_stripes=True):
    """Red | green | blue thirds across the long side (3 * side x side)."""
    if vertical_stripes:
        pixels = np.zeros((height, width, 3), np.uint8)
        third = width // 3
        pixels[:, :third], pixels[:, third:2 * third], pixels[:, 2 * third:] = RED, GREEN, BLUE
    else:
        pixels = np.zeros((height, width, 3), np.uint8)
        third = height // 3
        pixels[:third], pixels[third:2 * third], pixels[2 * third:] = RED, GREEN, BLUE
    return pixels


@pytest.mark.parametrize("image_size", [3, 4, 8, 10, 17])
@pytest.mark.parametrize("landscape", [True, False])
def test_center_crop_keeps_only_the_centre(tmp_path, image_size, landscape):
    # 30 x 10 (or 10 x 30): the central 10 x 10 square is exactly the green stripe, and no
    # red or blue from outside the crop may leak into the edges of the output.
    pixels = three_stripes(30, 10) if landscape else three_stripes(10, 30, vertical_stripes=False)
    out = decode_image(save(tmp_path / "stripes.png", pixels), image_size, "center_crop")
    assert_layout(out, image_size)
    np.testing.assert_array_equal(hwc(out), np.broadcast_to(GREEN, (image_size, image_size, 3)))


def test_center_crop_of_a_square_image_is_a_plain_resize(tmp_path):
    pixels = random_rgb(12, 12)
    file = save(tmp_path / "sq.png", pixels)
    np.testing.assert_array_equal(decode_image(file, 6, "center_crop"),
                                  decode_image(file, 6, "squash"))


@pytest.mark.parametrize("width,height,content", [
    (20, 10, (slice(2, 6), slice(0, 8))),   # landscape: bars top and bottom
    (10, 20, (slice(0, 8), slice(2, 6))),   # portrait: bars left and right
    (10, 10, (slice(0, 8), slice(0, 8))),   # square: no bars
    (30, 10, (slice(2, 5), slice(0, 8))),   # 8 x round(2.67) = 3 high, offset (8 - 3) // 2 = 2
])
def test_pad_fits_inside_black_bars(tmp_path, width, height, content):
    file = save(tmp_path / "white.png", np.full((height, width, 3), 255, np.uint8))
    out = hwc(decode_image(file, 8, "pad"))
    expected = np.zeros((8, 8, 3), np.uint8)
    expected[...] = PAD_FILL
    expected[content] = WHITE
    np.testing.assert_array_equal(out, expected)


def test_pad_of_an_image_already_at_size_is_exact(tmp_path):
    pixels = random_rgb(4, 8)  # 8 wide, 4 high -> rows 2..5 of an 8 x 8
    out = hwc(decode_image(save(tmp_path / "x.png", pixels), 8, "pad"))
    np.testing.assert_array_equal(out[2:6], pixels)
    np.testing.assert_array_equal(out[:2], 0)
    np.testing.assert_array_equal(out[6:], 0)


def test_jpeg_draft_scaling_still_gives_the_right_size_and_colours(tmp_path):
    # A big JPEG is decoded at 1/8 scale (draft); the result must still be exact in layout.
    pixels = np.zeros((400, 800, 3), np.uint8)
    pixels[:, :400] = RED
    pixels[:, 400:] = BLUE
    file = save(tmp_path / "big.jpg", pixels, quality=95)
    for resize in RESIZE_MODES:
        out = hwc(decode_image(file, 8, resize))
        assert out.shape == (8, 8, 3)
    squashed = hwc(decode_image(file, 8, "squash"))
    np.testing.assert_allclose(squashed[:, :3].reshape(-1, 3), np.tile(RED, (24, 1)), atol=6)
    np.testing.assert_allclose(squashed[:, 5:].reshape(-1, 3), np.tile(BLUE, (24, 1)), atol=6)


def test_unknown_resize_mode_raises_value_error(tmp_path):
    file = save(tmp_path / "x.png", random_rgb(4, 4))
    with pytest.raises(ValueError, match="stretch"):
        decode_image(file, 4, "stretch")
    # Checked before the file is even opened: a bad mode is a programming error, not a reject.
    with pytest.raises(ValueError):
        decode_image(str(tmp_path / "missing.png"), 4, "crop")
