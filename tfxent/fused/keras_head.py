"""`LinearCrossEntropyHead`: a Keras 3 layer (TensorFlow backend) that replaces a causal
LM's `Dense(V)` + `SparseCategoricalCrossentropy(from_logits=True)` (docs/fused.md#keras)."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfxent.fused._api import linear_sparse_softmax_cross_entropy


class LinearCrossEntropyHead(keras.layers.Layer):
    """The output projection and its loss in one layer, without the [tokens, V] logits.

    `head(hidden, labels)` returns the per-token loss ([...], labels' shape) and adds its
    mean over the counted tokens (labels != `ignore_index`) to the layer's losses, so a model
    compiled without a loss trains on it under `model.fit`. `head(hidden)` returns the logits
    `hidden @ kernel + bias` (soft-capped if `logit_soft_cap` is set), for prediction.
    The weights are `kernel` [D, V] and `bias` [V], as `Dense(V)`'s, so weights move between
    the two heads with `set_weights`.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        use_bias: bool = True,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        bias_initializer: str | keras.initializers.Initializer = "zeros",
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        logit_soft_cap: float | None = None,
        chunk_size: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.loss_options = {
            "ignore_index": ignore_index,
            "label_smoothing": label_smoothing,
            "z_loss": z_loss,
            "logit_soft_cap": logit_soft_cap,
            "chunk_size": chunk_size,
        }

    def build(self, input_shape) -> None:
        hidden_size = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(hidden_size, self.vocab_size), initializer=self.kernel_initializer
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.vocab_size,), initializer=self.bias_initializer
            )

    def _weights_in_compute_dtype(self) -> tuple[tf.Tensor, tf.Tensor | None]:
        kernel = tf.cast(self.kernel, self.compute_dtype)
        bias = None if self.bias is None else tf.cast(self.bias, self.compute_dtype)
        return kernel, bias

    def call(self, hidden: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        hidden = tf.cast(hidden, self.compute_dtype)
        kernel, bias = self._weights_in_compute_dtype()
        if labels is None:
            logits = tf.tensordot(hidden, kernel, axes=1)
            if bias is not None:
                logits = logits + bias
            cap = self.loss_options["logit_soft_cap"]
            return logits if cap is None else cap * tf.tanh(logits / cap)
        labels = tf.cast(labels, tf.int32)
        loss = linear_sparse_softmax_cross_entropy(
            hidden, kernel, labels, bias, **self.loss_options
        )
        ignore = self.loss_options["ignore_index"]
        counted = tf.ones_like(labels, tf.float32)
        if ignore is not None:
            counted = tf.cast(tf.not_equal(labels, ignore), tf.float32)
        total = tf.reduce_sum(tf.cast(loss, tf.float32))
        self.add_loss(total / tf.maximum(tf.reduce_sum(counted), 1.0))
        return loss

    def compute_output_shape(self, hidden_shape, labels_shape=None):
        if labels_shape is not None:
            return tuple(labels_shape)
        return (*hidden_shape[:-1], self.vocab_size)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            **self.loss_options,
        )
        return config
