"""The Keras head: the example LM trains under model.fit with the unfused head's losses, on
tfxent's ops; logits for prediction; the README section runs as written."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest_helpers import REPO, child_env
from fused_helpers import KERNEL_OPS, graph_op_types

sys.path.insert(0, str(REPO / "examples"))
import fused_lm_head  # noqa: E402

from tfxent.fused import LinearCrossEntropyHead  # noqa: E402

SECTION = "## The language-model head without its logits"


@pytest.mark.slow
def test_example_trains_with_the_unfused_losses_on_tfxent_ops():
    unfused, fused, model = fused_lm_head.train()
    assert len(fused) == fused_lm_head.STEPS
    np.testing.assert_allclose(fused, unfused, rtol=1e-5)
    tokens, targets = fused_lm_head.batches()
    step = tf.function(model.train_step, autograph=False)
    data = ((tf.constant(tokens[:8]), tf.constant(targets[:8])),)
    assert KERNEL_OPS <= graph_op_types(step.get_concrete_function(data).graph.as_graph_def())


def test_logits_for_prediction_match_dense():
    head = LinearCrossEntropyHead(50, logit_soft_cap=None)
    hidden = tf.random.normal([2, 3, 8], seed=1)
    logits = head(hidden)
    dense = tf.keras.layers.Dense(50)
    dense.build(hidden.shape)
    dense.set_weights(head.get_weights())
    np.testing.assert_allclose(logits, dense(hidden), rtol=1e-6, atol=1e-6)
    labels = tf.constant([[1, 2, 3], [4, 5, 6]])
    loss = head(hidden, labels)
    want = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)
    assert LinearCrossEntropyHead.from_config(head.get_config()).vocab_size == 50


def _section_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start : end if end != -1 else None], re.S)


@pytest.mark.slow
@pytest.mark.parametrize("block", _section_blocks())
def test_readme_section_runs(block, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", block],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip()
