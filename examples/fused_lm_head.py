"""A small causal language model trained for a few steps with each head: Keras's
`Dense(V)` + `SparseCategoricalCrossentropy(from_logits=True)`, and tfxent's fused
`LinearCrossEntropyHead`, from the same initial weights on the same batches. The losses
agree; the fused head never materialises the [tokens, V] logits.

    python examples/fused_lm_head.py
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfxent.fused import LinearCrossEntropyHead

VOCAB, WIDTH, CONTEXT, STEPS = 512, 32, 16, 5


def body(tokens):
    """Embedding, one causal self-attention block and a feed-forward layer."""
    x = keras.layers.Embedding(VOCAB, WIDTH)(tokens)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16)(x, x, use_causal_mask=True)
    x = keras.layers.LayerNormalization()(x + attended)
    return keras.layers.Dense(WIDTH, activation="gelu")(x)


def unfused_model() -> keras.Model:
    tokens = keras.Input((CONTEXT,), dtype="int32")
    logits = keras.layers.Dense(VOCAB)(body(tokens))
    model = keras.Model(tokens, logits)
    model.compile(
        optimizer=keras.optimizers.SGD(2.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def fused_model() -> keras.Model:
    tokens = keras.Input((CONTEXT,), dtype="int32")
    targets = keras.Input((CONTEXT,), dtype="int32")
    loss = LinearCrossEntropyHead(VOCAB)(body(tokens), targets)
    model = keras.Model([tokens, targets], loss)
    model.compile(optimizer=keras.optimizers.SGD(2.0))  # the head adds its mean loss
    return model


def batches(seed: int = 0):
    """Sequences that count up modulo VOCAB from random starts: next-token prediction."""
    starts = np.random.default_rng(seed).integers(0, VOCAB, size=(8 * STEPS, 1))
    sequence = (starts + np.arange(CONTEXT + 1)) % VOCAB
    return sequence[:, :-1].astype("int32"), sequence[:, 1:].astype("int32")


def train() -> tuple[list[float], list[float], keras.Model]:
    """Per-step losses of the unfused and the fused head, and the fused model."""
    keras.utils.set_random_seed(0)
    reference = unfused_model()
    fused = fused_model()
    fused.set_weights(reference.get_weights())  # same layers in the same order
    inputs, targets = batches()
    kwargs = {"batch_size": 8, "epochs": 1, "shuffle": False, "verbose": 0}

    class Losses(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seen = []

        def on_train_batch_end(self, batch, logs=None):
            self.seen.append(float(logs["loss"]))

    unfused_losses, fused_losses = Losses(), Losses()
    reference.fit(inputs, targets, callbacks=[unfused_losses], **kwargs)
    fused.fit([inputs, targets], None, callbacks=[fused_losses], **kwargs)
    return unfused_losses.seen, fused_losses.seen, fused


if __name__ == "__main__":
    unfused, fused, _ = train()
    for step, (a, b) in enumerate(zip(unfused, fused, strict=True)):
        print(f"step {step}: Dense + SparseCategoricalCrossentropy {a:.6f}  fused head {b:.6f}")
    np.testing.assert_allclose(fused, unfused, rtol=1e-5)
    print("largest difference:", float(tf.reduce_max(tf.abs(np.subtract(fused, unfused)))))
