"""Where TF would run a call: the decision that keeps GPU work off tfxent's CPU-only op.

tfxent has CPU kernels only. TF places an op on the device its scope names, else on a GPU
when one is visible, else on the CPU; a CPU-only op on a GPU host would be pinned to the
host by the placer, and every call would copy [N, C] from the GPU and the gradient back. So
the custom op is chosen only where TF itself would run the call on a CPU; everywhere else
tfxent takes its composite path of TF primitives, which TF places on the GPU like any other
(docs/install.md, "GPU hosts", says why not TF's own xent kernel).

The decision is made when the call is traced (in eager mode: when it runs) from the device
scope and the visible devices. In a tf.function only the scopes inside its body count: TF
does not retrace a function for its eager caller's `tf.device` (outside distribution
strategies, which push their device scope into the body), so one trace may run on any device.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.eager import context
from tensorflow.python.framework import ops

from tfxent import _op_names

_visible: list[str] = []


def accelerators() -> list[str]:
    """The visible logical devices that are not CPUs (e.g. ["/device:GPU:0"]). Fixed once TF
    has initialised its devices, so it is read once."""
    if not _visible:
        devices = tf.config.list_logical_devices()
        _visible.append("")  # marks "read" even when there is no accelerator
        _visible.extend(d.name for d in devices if d.device_type != "CPU")
    return _visible[1:]


class _Probe:
    """Stands in for the op about to be created, so the graph's device functions can say
    which device they would give it (what `Graph._apply_device_functions` does to an op)."""

    type = _op_names.DENSE
    device = ""
    node_def = None

    def _set_device_from_string(self, device: str) -> None:
        self.device = device


def scope_device() -> str:
    """The device the current `tf.device` scope gives a new op ("" when none is set)."""
    if tf.executing_eagerly():
        return context.context().device_name or ""
    probe = _Probe()
    try:
        # Private, but the one place TF merges nested scopes and device functions; the same
        # in TF 2.12-2.21. A device function that cannot handle the probe makes the scope
        # "unknown", which is treated like a GPU one.
        ops.get_default_graph()._apply_device_functions(probe)
    except (AttributeError, TypeError, ValueError):
        return "unknown"
    return probe.device or ""


def device_type(device: str) -> str:
    """ "CPU", "GPU", ... for a device string; "" when it names no type."""
    if not device:
        return ""
    try:
        return (tf.DeviceSpec.from_string(device).device_type or "").upper()
    except ValueError:
        return "UNKNOWN"


def off_cpu_reason(logits: tf.Tensor) -> str | None:
    """Why TF would run this call somewhere other than a CPU, or None if on a CPU."""
    scope = scope_device()
    kind = device_type(scope)
    if kind == "CPU":
        return None  # an explicit CPU scope: TF runs the call there too
    if kind:
        return f"the device scope {scope} places the call on a device without a tfxent kernel"
    tensor_device = getattr(logits, "device", "") or ""
    if device_type(tensor_device) not in ("", "CPU"):
        return f"no tfxent kernel for device {tensor_device}"
    visible = accelerators()
    if visible:
        return (
            f"no device scope, and TF would place the call on {visible[0]} (visible: "
            f"{', '.join(visible)}); tfxent's op has CPU kernels only"
        )
    return None
