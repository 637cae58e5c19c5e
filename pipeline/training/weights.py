"""A keras.applications backbone's starting weights, checked before anything else is built.

    weights.check_starting_weights("EfficientNetV2B0", "imagenet", image_shape=(3, 224, 224))

`weights` is None (random), "imagenet" or a file. "imagenet" is Keras's download of the
application's weights without its top (`efficientnetv2-b0_notop.h5` into ~/.keras/models, or
$KERAS_HOME/models): it is fetched here, first, so that a machine without network fails in one
line (WeightsError: the file, its URL, and `weights=` that takes it once downloaded elsewhere)
instead of a traceback after the input is built. A file is a `.weights.h5` saved from the same
application with include_top=False, or that download: loaded here into a bare application,
so that a file of another model, or no weights file at all, is one line saying what was
expected (Keras's own message lists every variable, 500 lines).

Keras has no call that names an application's weights file, so the check builds the bare
application with Keras's fetch replaced by one that records what it was asked for and stops
the build there, then fetches that file itself. The build draws initial values: the caller
seeds again after it.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Sequence

import keras
from keras.src.utils import file_utils

from pipeline import errors

# Longest piece of Keras's own message that a WeightsError quotes.
QUOTED_CHARS = 160


class WeightsError(errors.ConfigError):
    """The starting weights cannot be had: not downloadable here, or a file that does not fit
    the backbone."""


class _Located(Exception):
    """Stops the locating build at Keras's fetch, carrying its arguments."""

    def __init__(self, args, kwargs):
        super().__init__("located")
        self.fetch_args, self.fetch_kwargs = args, kwargs


def check_starting_weights(name: str, weights: str | None, image_shape: Sequence[int]) -> None:
    """Fetch "imagenet" weights into Keras's cache, or load a weights file into a bare
    `name` of `image_shape` (CHW, sides None for any size); WeightsError when either fails."""
    if weights is None:
        return
    channels, height, width = image_shape
    input_shape = (height, width, channels)
    builder = getattr(keras.applications, name)
    if weights == "imagenet":
        fetch_imagenet_weights(name, builder, input_shape)
    else:
        base = builder(include_top=False, weights=None, input_shape=input_shape, pooling="avg")
        load_weights_file(base, name, weights)


def fetch_imagenet_weights(name: str, builder, input_shape: Sequence[int | None]) -> str | None:
    """The path of `name`'s ImageNet weights in Keras's cache, downloaded there first when
    missing; None when the application cannot be built so (its own build then says why)."""
    real_fetch = file_utils.get_file

    def locate(*args, **kwargs):
        raise _Located(args, kwargs)

    file_utils.get_file = locate
    try:
        builder(include_top=False, weights="imagenet", input_shape=input_shape, pooling="avg")
        return None  # built without fetching: nothing to check
    except _Located as located:
        args, kwargs = located.fetch_args, located.fetch_kwargs
    except ValueError:
        return None  # an input shape the application refuses: its build says so
    finally:
        file_utils.get_file = real_fetch
    try:
        return real_fetch(*args, **kwargs)
    # Keras turns a failed download (URLError, HTTPError: both OSError) into a bare Exception.
    except Exception as err:  # noqa: BLE001 - re-raised unless it is a failed download
        failed = err.__context__ if isinstance(err.__context__, OSError) else None
        if failed is None:
            raise
        file_name = kwargs.get("fname", args[0] if args else "the weights file")
        origin = kwargs.get("origin", args[1] if len(args) > 1 else "")
        raise WeightsError(no_download_message(name, file_name, origin, failed)) from None


def no_download_message(name: str, file_name: str, origin: str, failed: OSError) -> str:
    reason = getattr(failed, "reason", None) or failed
    cache = os.path.join(os.environ.get("KERAS_HOME", "~/.keras"), "models")
    return (f"weights='imagenet': cannot download {name}'s {file_name} ({reason}; no "
            f"network?): fetch {origin} on a machine with network and pass "
            f"weights='/path/to/{file_name}' (train.py: --gin_bindings=\"train_and_evaluate."
            f"weights='/path/to/{file_name}'\"), or put it in {cache}/; weights=None trains "
            "from scratch")


def load_weights_file(base: keras.Model, name: str, path: str) -> None:
    """`path` into the application `base` (without its top), or WeightsError saying what the
    file must be."""
    if not os.path.isfile(path):
        raise WeightsError(f"weights={path!r}: no such file; {expected(name)}")
    with warnings.catch_warnings():
        # Keras warns once per layer it finds no weights for: hundreds of lines for a file of
        # another model, before its error says the same.
        warnings.simplefilter("ignore")
        try:
            base.load_weights(path)
        except (OSError, ValueError) as err:
            raise WeightsError(f"weights={path!r} does not fit keras.applications.{name} "
                               f"without its top ({keras_reason(err)}); {expected(name)}"
                               ) from None


def expected(name: str) -> str:
    return (f"pass a .weights.h5 saved from keras.applications.{name}(include_top=False) "
            f"(base.save_weights(path)), Keras's own ImageNet download of {name} (*_notop.h5), "
            "'imagenet' or None")


def keras_reason(err: BaseException) -> str:
    """The gist of Keras's or h5py's message (which may print every weight of a layer): how
    many layers did not load, the first one and its shapes; else its first line, shortened."""
    text = str(err)
    if "signature not found" in text:
        return "not an HDF5 file"
    count = re.search(r"A total of (\d+) objects could not be loaded", text)
    layer = re.search(r"for object <\w+ name=([^,>]+)", text)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))",
                       text)
    if count and layer:
        example = (f"shape {shapes.group(1)} here, {shapes.group(2)} in the file" if shapes
                   else _example_line(text))
        return shorten(f"{count.group(1)} layers do not load, the first {layer.group(1)}: "
                       f"{example}")
    return shorten(text.strip().splitlines()[0] if text.strip() else type(err).__name__)


def _example_line(text: str) -> str:
    """The first line of Keras's example error: the line after "Example error message"."""
    lines = [line for line in text.splitlines() if line.strip()]
    for number, line in enumerate(lines[:-1]):
        if line.startswith("A total of"):
            return lines[number + 1].strip()
    return ""


def shorten(text: str) -> str:
    text = text.rstrip(".: ")
    return text if len(text) <= QUOTED_CHARS else text[:QUOTED_CHARS - 3] + "..."
