"""An augmentation op registered from outside pipeline.augment, as a user's `my_ops.py` would
be: import the module (a gin file's `import custom_ops`, or a plain import) and `invert` is
usable in every augment spec, in tf.data and in DevicePreprocess.

Importing it registers the op: test_custom_op imports it afresh and removes it again.
"""

import tensorflow as tf

from pipeline.augment import Op, register
from pipeline.augment.common import check_range, uniform


@register("invert")
def get_invert(probability: float = 0.5) -> Op:
    """Turns each image into its negative (255 - x) with `probability`."""
    check_range("invert", "probability", probability, 0.0, 1.0)  # ConfigError at build time

    def _invert(images, labels, seed):
        images = tf.convert_to_tensor(images)
        # [B]-shaped stateless draw -> [B, 1, 1, 1] mask: per-image, batched, seeded.
        invert = uniform([tf.shape(images)[0]], seed) < probability
        negative = tf.constant(255, images.dtype) - images  # exact for uint8 and float 0-255
        return tf.where(invert[:, None, None, None], negative, images), labels

    return _invert
