"""Decode one source image into the stored layout: uint8 CHW, RGB, image_size x image_size.

Pillow does the decoding so that every format users bring works the same way: EXIF
orientation is applied, grayscale / RGBA / palette / CMYK / 16-bit become RGB uint8, and any
failure becomes a `RejectedImage` with a short reason that goes to `rejects.csv`.
"""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

RESIZE_MODES = ("squash", "center_crop", "pad")

# Larger images are refused as decompression bombs before any pixel is decoded. 16384^2 covers
# every real photo (a 200 MP phone photo is 16320x12240); a small file that claims more is an
# attack or a corrupt header. This limit replaces Pillow's own (179 MP), see _open.
MAX_PIXELS = 16384 * 16384
# ...and so are images whose decoded pixels would take more memory than this, checked after
# a JPEG's draft (which decodes it smaller) and before any pixel is decoded: Pillow keeps
# 1 byte per pixel for L and P, 2 for 16-bit grey, 4 for everything else (RGB included), and
# converting a 16-bit image takes about as much again. 256 MiB: a 67 MP RGB PNG or a 134 MP
# 16-bit grey one; a worker then peaks well under 1 GiB (a 12000x12000 16-bit PNG, 288 MiB,
# took 5.5 GiB before this limit).
MAX_DECODED_BYTES = 256 << 20
# Transparent pixels are composited onto this colour: dropping alpha would show whatever RGB
# happens to sit under a transparent pixel (often black), which is not what the image shows.
ALPHA_BACKGROUND = (255, 255, 255)
PAD_FILL = (0, 0, 0)
# Antialiased resampling: sources are usually downscaled, often by a lot.
RESAMPLE = Image.Resampling.BILINEAR
# What Pillow raises on malformed files, besides its own classes: a damaged file must reject
# that one image, never stop the run.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError,
                 ZeroDivisionError, Warning)


class RejectedImage(Exception):
    """A source image that cannot be stored; `reason` goes to rejects.csv."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decode_image(file: str, image_size: int, resize: str = "squash") -> np.ndarray:
    """Read `file` and return a C-contiguous uint8 array of shape (3, image_size, image_size).

    Raises RejectedImage (with a reason for rejects.csv) for anything that is not a usable image.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize {resize!r}; use one of {RESIZE_MODES}")
    try:
        return _decode(file, image_size, resize)
    except RejectedImage:
        raise
    except DECODE_ERRORS as err:
        raise RejectedImage(f"cannot decode: {_short(err)}") from err


def _decode(file: str, image_size: int, resize: str) -> np.ndarray:
    with _open(file) as img:
        _check_pixels(img)
        _request_draft(img, image_size, resize)
        _check_decoded_bytes(img)
        try:
            with warnings.catch_warnings():
                # Pillow warns (not raises) on some damaged files; a warning here means the
                # pixels are not what the file claims, so treat it as a failure.
                warnings.simplefilter("error")
                img.load()
                img = ImageOps.exif_transpose(img)
        except DECODE_ERRORS as err:
            raise RejectedImage(f"truncated or corrupt: {_short(err)}") from err
        rgb = to_rgb(img)
    resized = resize_square(rgb, image_size, resize)
    hwc = np.asarray(resized, dtype=np.uint8)
    # HWC -> CHW is the one unavoidable copy; the result is C-contiguous.
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


def _open(file: str) -> Image.Image:
    try:
        if os.path.isdir(file):
            raise RejectedImage("not a file (a directory)")
        if os.path.getsize(file) == 0:
            raise RejectedImage("empty file (0 bytes)")
        return _open_with_our_pixel_limit(file)
    except FileNotFoundError as err:
        raise RejectedImage("missing file") from err
    except IsADirectoryError as err:
        raise RejectedImage("not a file (a directory)") from err
    except PermissionError as err:
        raise RejectedImage(f"unreadable: {_short(err)}") from err
    except UnidentifiedImageError as err:
        raise RejectedImage("not an image (format not recognised)") from err
    except Image.DecompressionBombError as err:
        raise RejectedImage(f"decompression bomb: {_short(err)}") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise RejectedImage(f"unreadable: {_short(err)}") from err


def _open_with_our_pixel_limit(file: str) -> Image.Image:
    """Image.open, with Pillow's decompression-bomb check moved to MAX_PIXELS.

    Pillow warns above MAX_IMAGE_PIXELS and raises above twice that, at open time. Its default
    would reject real 200 MP photos, so its check is off for this call; _check_pixels applies
    MAX_PIXELS right after, before any pixel is decoded, and names the image's size.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(file)
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _check_pixels(img: Image.Image) -> None:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise RejectedImage(f"invalid size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise RejectedImage(
            f"decompression bomb: {width}x{height} = {width * height} pixels > {MAX_PIXELS}"
        )


def _request_draft(img: Image.Image, image_size: int, resize: str) -> None:
    """Let the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding (DCT scaling).

    A 4000x3000 photo headed for 224x224 then decodes at 500x375: several times faster, and
    the final resize still sees more pixels than it outputs. Other formats ignore drafts.
    """
    if img.format != "JPEG":
        return
    width, height = img.size
    if resize == "squash":
        wanted = (image_size, image_size)
    else:
        # center_crop needs the short side >= image_size, pad needs the long side >= image_size.
        side = min(width, height) if resize == "center_crop" else max(width, height)
        wanted = (-(-image_size * width // side), -(-image_size * height // side))
    try:
        img.draft(img.mode, wanted)
    except (OSError, ValueError) as err:
        raise RejectedImage(f"unreadable: {_short(err)}") from err


def decoded_bytes(img: Image.Image) -> int:
    """The memory Pillow takes for `img`'s pixels once decoded (at its draft size)."""
    width, height = img.size
    if img.mode in ("1", "L", "P"):
        per_pixel = 1
    elif img.mode.startswith("I;16"):
        per_pixel = 2
    else:
        per_pixel = 4
    return width * height * per_pixel


def _check_decoded_bytes(img: Image.Image) -> None:
    needed = decoded_bytes(img)
    if needed > MAX_DECODED_BYTES:
        width, height = img.size
        raise RejectedImage(
            f"too large to decode: {width}x{height} {img.mode} takes {needed / 2**20:,.0f} MiB "
            f"> {MAX_DECODED_BYTES / 2**20:,.0f} MiB (images.MAX_DECODED_BYTES)")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. High bit depths are scaled, alpha is composited."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _high_depth_to_l(img)
    if img.mode == "P":
        # Palette images may carry transparency in the palette: expand it to real alpha.
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "RGBa", "PA") or (
        img.mode in ("L", "RGB") and "transparency" in img.info  # PNG tRNS colour key
    ):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, ALPHA_BACKGROUND)
        background.paste(img, mask=img.getchannel("A"))
        return background
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return img


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit grayscale -> 8-bit L by keeping the top 8 of 16 bits."""
    values = np.asarray(img)
    if img.mode == "F":
        scaled = np.clip(values, 0, 255)
    else:
        # 'I' holds 16-bit PNG samples (0..65535) as int32; >> 8 maps 65535 -> 255.
        scaled = np.clip(values.astype(np.int64) >> 8, 0, 255)
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def resize_square(img: Image.Image, image_size: int, resize: str) -> Image.Image:
    """Make an RGB image image_size x image_size by squashing, centre-cropping or padding."""
    width, height = img.size
    size = (image_size, image_size)
    if resize == "squash":
        return img if img.size == size else img.resize(size, RESAMPLE)
    if resize == "center_crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        # Crop first: resize(box=...) also samples pixels just outside the box (the filter's
        # support), which would blend cropped-away content into the edge pixels.
        return img.crop((left, top, left + side, top + side)).resize(size, RESAMPLE)
    if resize == "pad":
        scale = image_size / max(width, height)
        inner = (max(1, round(width * scale)), max(1, round(height * scale)))
        canvas = Image.new("RGB", size, PAD_FILL)
        offset = ((image_size - inner[0]) // 2, (image_size - inner[1]) // 2)
        canvas.paste(img if img.size == inner else img.resize(inner, RESAMPLE), offset)
        return canvas
    raise ValueError(f"unknown resize {resize!r}; use one of {RESIZE_MODES}")


def _short(err: BaseException, limit: int = 120) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
