"""decode_image: every odd-but-valid image is kept with the right pixels (modes, EXIF, names,
sizes). All images are made here with Pillow / numpy, in tmp_path.
"""

import numpy as np
import pytest
from PIL import Image

from image_testing import BLUE, GREEN, RED, WHITE, assert_layout, hwc, random_rgb, save
from pipeline.writing.images import ALPHA_BACKGROUND, PAD_FILL, RESIZE_MODES, decode_image


# ---------------------------------------------------------------------------------------------
# Identity and lossless formats: exact pixels
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 5, 16])
def test_square_rgb_png_at_its_own_size_comes_back_exactly(tmp_path, size):
    pixels = random_rgb(size, size, seed=size)
    out = decode_image(save(tmp_path / "x.png", pixels), size)
    assert_layout(out, size)
    np.testing.assert_array_equal(out, pixels.transpose(2, 0, 1))
    np.testing.assert_array_equal(hwc(out), pixels)  # channel order is RGB, not BGR


@pytest.mark.parametrize("ext,kwargs", [
    ("bmp", {}),
    ("webp", {"lossless": True}),
    ("tif", {}),
    ("ppm", {}),
])
def test_lossless_formats_decode_exactly(tmp_path, ext, kwargs):
    pixels = random_rgb(6, 6, seed=3)
    out = decode_image(save(tmp_path / f"x.{ext}", pixels, **kwargs), 6)
    assert_layout(out, 6)
    np.testing.assert_array_equal(hwc(out), pixels)


# ---------------------------------------------------------------------------------------------
# Modes other than RGB
# ---------------------------------------------------------------------------------------------


def test_grayscale_value_goes_to_all_three_channels(tmp_path):
    gray = np.arange(0, 256, 16, dtype=np.uint8).reshape(4, 4)
    file = save(tmp_path / "gray.png", gray)
    assert Image.open(file).mode == "L"
    out = decode_image(file, 4)
    assert_layout(out, 4)
    for channel in range(3):
        np.testing.assert_array_equal(out[channel], gray)


def test_one_bit_image_is_black_and_white(tmp_path):
    bits = np.array([[True, False], [False, True]])
    file = save(tmp_path / "bits.png", bits)
    assert Image.open(file).mode == "1"
    out = decode_image(file, 2)
    np.testing.assert_array_equal(out[0], [[255, 0], [0, 255]])
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


def composite(rgb, alpha):
    """What pasting `rgb` with `alpha` onto ALPHA_BACKGROUND gives (Pillow rounds)."""
    return [(c * alpha + b * (255 - alpha)) / 255 for c, b in zip(rgb, ALPHA_BACKGROUND)]


def test_rgba_transparent_pixels_are_composited_on_the_background(tmp_path):
    rgba = np.array([
        [[10, 20, 30, 255], [40, 50, 60, 0]],  # opaque, fully transparent (hidden colour)
        [[200, 0, 0, 128], [0, 0, 0, 0]],      # half transparent, transparent black
    ], np.uint8)
    file = save(tmp_path / "rgba.png", rgba)
    assert Image.open(file).mode == "RGBA"
    out = hwc(decode_image(file, 2))
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(out[0, 1], ALPHA_BACKGROUND)  # not the hidden (40, 50, 60)
    np.testing.assert_array_equal(out[1, 1], ALPHA_BACKGROUND)  # not black
    np.testing.assert_allclose(out[1, 0], composite((200, 0, 0), 128), atol=1)


def test_rgba_webp_is_composited_too(tmp_path):
    rgba = np.array([[[10, 20, 30, 255], [40, 50, 60, 0]]], np.uint8)
    file = save(tmp_path / "rgba.webp", rgba, lossless=True, exact=True)
    out = hwc(decode_image(file, 2, "pad"))  # 2x1 -> rows 0 (content) and 1 (pad)
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(out[0, 1], ALPHA_BACKGROUND)
    np.testing.assert_array_equal(out[1], [PAD_FILL, PAD_FILL])


def test_la_image(tmp_path):
    la = np.array([[[50, 255], [60, 0]], [[70, 128], [80, 255]]], np.uint8)
    file = save(tmp_path / "la.png", Image.fromarray(la, mode="LA"))
    assert Image.open(file).mode == "LA"
    out = hwc(decode_image(file, 2))
    np.testing.assert_array_equal(out[0, 0], [50, 50, 50])
    np.testing.assert_array_equal(out[0, 1], ALPHA_BACKGROUND)
    np.testing.assert_allclose(out[1, 0], composite((70, 70, 70), 128), atol=1)
    np.testing.assert_array_equal(out[1, 1], [80, 80, 80])


def palette_image():
    img = Image.new("P", (2, 2), 0)
    img.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0] + [0, 0, 0] * 253)
    img.putpixel((1, 0), 1)
    img.putpixel((0, 1), 2)
    return img  # [[index 0, index 1], [index 2, index 0]]


@pytest.mark.parametrize("transparent_index,expected_01", [
    (None, (200, 100, 50)),
    (1, ALPHA_BACKGROUND),  # the transparent palette entry shows the background
])
@pytest.mark.parametrize("ext", ["gif", "png"])
def test_palette_image_with_and_without_transparency(tmp_path, ext, transparent_index,
                                                      expected_01):
    kwargs = {} if transparent_index is None else {"transparency": transparent_index}
    file = save(tmp_path / f"p.{ext}", palette_image(), **kwargs)
    assert Image.open(file).mode == "P"
    out = hwc(decode_image(file, 2))
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(out[0, 1], expected_01)
    np.testing.assert_array_equal(out[1, 0], [0, 255, 0])
    np.testing.assert_array_equal(out[1, 1], [10, 20, 30])


def test_grayscale_png_with_transparent_value(tmp_path):
    gray = np.array([[5, 100], [200, 5]], np.uint8)
    file = save(tmp_path / "ltrns.png", gray, transparency=5)
    img = Image.open(file)
    assert (img.mode, img.info.get("transparency")) == ("L", 5)
    out = hwc(decode_image(file, 2))
    np.testing.assert_array_equal(out[0, 0], ALPHA_BACKGROUND)
    np.testing.assert_array_equal(out[0, 1], [100, 100, 100])
    np.testing.assert_array_equal(out[1, 0], [200, 200, 200])
    np.testing.assert_array_equal(out[1, 1], ALPHA_BACKGROUND)


def test_rgb_png_with_transparent_colour_key(tmp_path):
    # A PNG tRNS chunk on an RGB image: pixels of that exact colour are fully transparent.
    pixels = np.zeros((2, 2, 3), np.uint8)
    pixels[0, 0] = (10, 20, 30)
    pixels[1, 1] = (1, 2, 3)
    file = save(tmp_path / "trns.png", pixels, transparency=(10, 20, 30))
    img = Image.open(file)
    assert (img.mode, img.info.get("transparency")) == ("RGB", (10, 20, 30))
    out = hwc(decode_image(file, 2))
    np.testing.assert_array_equal(out[0, 0], ALPHA_BACKGROUND)
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])
    np.testing.assert_array_equal(out[1, 1], [1, 2, 3])


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 0, 0, 0))  # white
    cmyk.paste((0, 255, 255, 0), (0, 0, 8, 16))  # left half: no cyan, full magenta+yellow = red
    file = save(tmp_path / "cmyk.jpg", cmyk, quality=95)
    assert Image.open(file).mode == "CMYK"
    out = hwc(decode_image(file, 16))
    assert_layout(out.transpose(2, 0, 1), 16)
    np.testing.assert_allclose(out[:, :6].reshape(-1, 3), np.tile(RED, (16 * 6, 1)), atol=8)
    np.testing.assert_allclose(out[:, 10:].reshape(-1, 3), np.tile(WHITE, (16 * 6, 1)), atol=8)


def test_16_bit_grayscale_png_keeps_the_top_8_bits(tmp_path):
    values = np.array([[65535, 32768], [0, 256]], np.uint16)
    file = save(tmp_path / "gray16.png", values)
    assert Image.open(file).mode.startswith("I")
    out = decode_image(file, 2)
    assert_layout(out, 2)
    for channel in range(3):
        np.testing.assert_array_equal(out[channel], [[255, 128], [0, 1]])


# ---------------------------------------------------------------------------------------------
# EXIF orientation
# ---------------------------------------------------------------------------------------------


def left_red_right_blue_jpeg(path, orientation=None):
    """40 wide x 20 high: red left half, blue right half, optionally with an EXIF orientation."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = RED
    pixels[:, 20:] = BLUE
    kwargs = {"quality": 95, "subsampling": 0}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    return save(path, pixels, **kwargs)


def test_exif_orientation_6_is_applied(tmp_path):
    # Orientation 6: display = stored image rotated 90 degrees clockwise, so the stored left
    # half (red) becomes the top half of a portrait 20 x 40 image.
    file = left_red_right_blue_jpeg(tmp_path / "rotated.jpg", orientation=6)
    with Image.open(file) as img:
        assert img.size == (40, 20) and img.getexif()[0x0112] == 6

    out = hwc(decode_image(file, 8, "pad"))
    # Portrait content 4 wide x 8 high, centred: black bars left and right, not top and bottom.
    np.testing.assert_array_equal(out[:, :2], 0)
    np.testing.assert_array_equal(out[:, 6:], 0)
    np.testing.assert_allclose(out[:3, 2:6].reshape(-1, 3), np.tile(RED, (12, 1)), atol=6)
    np.testing.assert_allclose(out[5:, 2:6].reshape(-1, 3), np.tile(BLUE, (12, 1)), atol=6)

    squashed = hwc(decode_image(file, 8, "squash"))
    np.testing.assert_allclose(squashed[:3].reshape(-1, 3), np.tile(RED, (24, 1)), atol=6)
    np.testing.assert_allclose(squashed[5:].reshape(-1, 3), np.tile(BLUE, (24, 1)), atol=6)


def test_without_exif_orientation_the_image_is_not_rotated(tmp_path):
    file = left_red_right_blue_jpeg(tmp_path / "upright.jpg")
    out = hwc(decode_image(file, 8, "pad"))
    # Landscape content 8 wide x 4 high: black bars top and bottom.
    np.testing.assert_array_equal(out[:2], 0)
    np.testing.assert_array_equal(out[6:], 0)
    np.testing.assert_allclose(out[2:6, :3].reshape(-1, 3), np.tile(RED, (12, 1)), atol=6)
    np.testing.assert_allclose(out[2:6, 5:].reshape(-1, 3), np.tile(BLUE, (12, 1)), atol=6)


# ---------------------------------------------------------------------------------------------
# File names and extreme sizes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "with space.png",
    "  leading and trailing  .png",
    "naïve café ü.png",
    "猫 の 写真.png",
    "emoji 🐱.png",
    "quote's \"double\" #hash %20 ,comma.png",
    "no_extension",
    "UPPER.PNG",
])
def test_odd_file_names(tmp_path, name):
    pixels = random_rgb(4, 4, seed=7)
    file = save(tmp_path / name, pixels, format="PNG")
    np.testing.assert_array_equal(hwc(decode_image(file, 4)), pixels)


@pytest.mark.parametrize("resize", RESIZE_MODES)
def test_one_pixel_image_fills_the_square(tmp_path, resize):
    file = save(tmp_path / "dot.png", np.array([[[12, 34, 56]]], np.uint8))
    out = decode_image(file, 5, resize)
    assert_layout(out, 5)
    np.testing.assert_array_equal(hwc(out), np.broadcast_to([12, 34, 56], (5, 5, 3)))


def test_very_wide_image(tmp_path):
    # 1000 x 2: left half red, right half green.
    pixels = np.zeros((2, 1000, 3), np.uint8)
    pixels[:, :500] = RED
    pixels[:, 500:] = GREEN
    file = save(tmp_path / "wide.png", pixels)

    squashed = hwc(decode_image(file, 8, "squash"))
    assert (squashed[:, :3] == RED).all() and (squashed[:, 5:] == GREEN).all()

    cropped = hwc(decode_image(file, 8, "center_crop"))
    # The central 2x2 straddles the red/green border at x=500.
    assert_layout(cropped.transpose(2, 0, 1), 8)
    assert (cropped[:, 0] == RED).all() and (cropped[:, -1] == GREEN).all()

    padded = hwc(decode_image(file, 8, "pad"))
    # The content is 8 wide and 1 (rounded up from 0.016) high, in row (8 - 1) // 2 = 3.
    content_row = 3
    assert (padded[content_row, :3] == RED).all() and (padded[content_row, 5:] == GREEN).all()
    others = np.delete(padded, content_row, axis=0)
    np.testing.assert_array_equal(others, np.broadcast_to(PAD_FILL, others.shape))


def test_very_tall_image_pads_left_and_right(tmp_path):
    file = save(tmp_path / "tall.png", np.full((1000, 3, 3), 200, np.uint8))
    out = hwc(decode_image(file, 9, "pad"))
    # 3 x 1000 -> 1 (round(0.027) -> at least 1) x 9, in column (9 - 1) // 2 = 4.
    np.testing.assert_array_equal(out[:, 4], np.full((9, 3), 200))
    np.testing.assert_array_equal(np.delete(out, 4, axis=1), 0)
