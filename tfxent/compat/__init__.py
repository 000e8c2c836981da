"""Mirror of `tf.compat`: only `tfxent.compat.v1.nn` exists."""

from tfxent.compat import v1

__all__ = ["v1"]
