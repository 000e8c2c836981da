"""Train on tfxent under tf.distribute; print one JSON line of results.

    python distributed_training.py mirrored
    python distributed_training.py multiworker INDEX PORT0,PORT1

`mirrored`: two logical CPU devices, then the same training three ways: on one device
(no strategy) and under `MirroredStrategy` over both devices. `multiworker`: one of two
worker processes of a `MultiWorkerMirroredStrategy` on 127.0.0.1, one replica each.

Both run a custom training loop whose loss is `tfxent.nn.sparse_softmax_cross_entropy_with_logits`
(gradients all-reduced across replicas, plain SGD) and Keras `model.fit` whose
`CategoricalCrossentropy(from_logits=True)` runs on tfxent through `tfxent.patched()`. Every
global batch is split across the replicas, so each step sees what the one-device run sees.
The backend tfxent chose for each traced call and the op types of those graphs are reported.
"""

import json
import os
import sys

mode = sys.argv[1]
if mode == "multiworker":
    index, ports = int(sys.argv[2]), sys.argv[3].split(",")
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if mode == "mirrored":
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
else:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import tfxent  # noqa: E402
from tfxent import _backend  # noqa: E402
from tfxent.patch import patched  # noqa: E402

GLOBAL_BATCH, STEPS, LEARNING_RATE = 64, 12, 0.5
TF_XENT_OPS = {"SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"}

calls = []
_choose = _backend.choose


def _spy(logits):
    choice = _choose(logits)
    calls.append((choice.backend, choice.xla, tf.compat.v1.get_default_graph(), logits.device))
    return choice


_backend.choose = _spy

digits = load_digits()
images = (digits.data / 16.0).astype(np.float32)
classes = digits.target.astype(np.int32)
onehot = np.eye(10, dtype=np.float32)[classes]
rng = np.random.RandomState(0)
INITIAL = [
    rng.normal(0, 0.2, (64, 16)).astype(np.float32),
    np.zeros(16, np.float32),
    rng.normal(0, 0.2, (16, 10)).astype(np.float32),
    np.zeros(10, np.float32),
]


def custom_loop(strategy):
    """SGD on a 64-16-10 tanh network; returns the loss of every step and the weights."""
    with strategy.scope():
        variables = [
            tf.Variable(value, aggregation=tf.VariableAggregation.MEAN) for value in INITIAL
        ]

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            hidden = tf.tanh(tf.matmul(x, variables[0]) + variables[1])
            logits = tf.matmul(hidden, variables[2]) + variables[3]
            per_example = tfxent.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits
            )
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)
        gradients = tape.gradient(loss, variables)
        gradients = tf.distribute.get_replica_context().all_reduce("sum", gradients)
        for variable, gradient in zip(variables, gradients, strict=True):
            variable.assign_sub(LEARNING_RATE * gradient)
        return loss

    @tf.function
    def train_step(x, y):
        losses = strategy.run(replica_step, args=(x, y))
        return strategy.reduce("sum", losses, axis=None)

    losses = []
    for step in range(STEPS):
        start = step * GLOBAL_BATCH

        def local(context, data, start=start):
            per_replica = GLOBAL_BATCH // context.num_replicas_in_sync
            first = start + context.replica_id_in_sync_group * per_replica
            return tf.constant(data[first : first + per_replica])

        x = strategy.experimental_distribute_values_from_function(lambda c: local(c, images))
        y = strategy.experimental_distribute_values_from_function(lambda c: local(c, classes))
        losses.append(float(train_step(x, y)))
    return {"losses": losses, "weights": [v.numpy().tolist() for v in variables]}


def _work_around_keras_multiworker_fit(model):
    """Keras 3's `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585): its
    first-batch build reduces a distributed batch, and its logs reduce scalars along axis 0.
    Build from one replica's share of a batch instead, and keep each worker's logs local
    (the test averages them; every worker's share is the same size). Gradients are still
    all-reduced across the workers by the optimizer, as always."""
    from keras.src.backend.tensorflow import trainer

    share = GLOBAL_BATCH // strategy.num_replicas_in_sync
    with strategy.scope():
        model._symbolic_build(data_batch=(images[:share], onehot[:share]))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    trainer._collective_all_reduce_multi_worker = lambda strategy: False


def keras_fit(strategy):
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(16, activation="tanh"),
                keras.layers.Dense(10),
            ]
        )
        model.set_weights(INITIAL)
        model.compile(
            optimizer=keras.optimizers.SGD(LEARNING_RATE),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            jit_compile=False,
        )
    dataset = tf.data.Dataset.from_tensor_slices((images[:768], onehot[:768])).batch(GLOBAL_BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    if mode == "multiworker":
        _work_around_keras_multiworker_fit(model)
    with patched():
        history = model.fit(dataset, epochs=2, verbose=0)
    return {"losses": history.history["loss"], "weights": [w.tolist() for w in model.get_weights()]}


def report_calls():
    seen = []
    for backend, xla, graph, device in calls:
        op_types = {op.type for op in graph.get_operations()}
        seen.append(
            {
                "backend": backend,
                "xla": xla,
                "device": device,
                "tfxent_ops": sorted(t for t in op_types if t.startswith("Tfxent")),
                "tf_xent_ops": sorted(op_types & TF_XENT_OPS),
            }
        )
    calls.clear()
    return seen


result = {"replicas": strategy.num_replicas_in_sync}
result["distributed"] = {"custom_loop": custom_loop(strategy)}
result["distributed_calls"] = {"custom_loop": report_calls()}
result["distributed"]["fit"] = keras_fit(strategy)
result["distributed_calls"]["fit"] = report_calls()
if mode == "mirrored":
    single = tf.distribute.OneDeviceStrategy("/cpu:0")
    result["single"] = {"custom_loop": custom_loop(single), "fit": keras_fit(single)}
    result["single_calls"] = report_calls()
print(json.dumps(result))
