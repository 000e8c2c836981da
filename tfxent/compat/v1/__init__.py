"""Mirror of `tf.compat.v1`: only `tfxent.compat.v1.nn` exists."""

from tfxent.compat.v1 import nn

__all__ = ["nn"]
