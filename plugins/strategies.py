"""Built-in distribution strategies (tf.distribute: the one place for TensorFlow code)."""

from __future__ import annotations

import re
from typing import Literal

import cifarkit
from cifarkit import StrategyError


def _canonical(device: str) -> str:
    """'/gpu:0', 'GPU:0', '/device:GPU:0' -> '/device:GPU:0'."""
    m = re.fullmatch(r"/?(?:device:)?([A-Za-z_]+):(\d+)", device.strip())
    if not m:
        raise StrategyError(f"{device!r} is not a device name (expected e.g. '/gpu:0' or '/cpu:0')")
    return f"/device:{m.group(1).upper()}:{m.group(2)}"


def _check_devices(devices: list[str]) -> list[str]:
    import tensorflow as tf

    available = [d.name for d in tf.config.list_logical_devices()]
    out = []
    for device in devices:
        name = _canonical(device)
        if not any(a.endswith(name.removeprefix("/device")) or a == name for a in available):
            raise StrategyError(f"device {device!r} is not present on this machine "
                                f"(available: {', '.join(available) or 'none'})")
        out.append(name)
    return out


def _gpus() -> list[str]:
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices("GPU")]


def one_device(device: str = "auto"):
    """Train on one device: a GPU if there is one, else the CPU.

    Args:
        device: "auto" (the first GPU, else the CPU) or a device name such as
            "/gpu:1" or "/cpu:0".
    """
    import tensorflow as tf

    if device == "auto":
        gpus = _gpus()
        device = gpus[0] if gpus else "/cpu:0"
    return tf.distribute.OneDeviceStrategy(_check_devices([device])[0])


def mirrored(devices: list[str] | None = None,
             cross_device_ops: Literal["auto", "nccl", "hierarchical_copy",
                                       "reduce_to_one_device"] = "auto"):
    """Synchronous data parallelism over the devices of one machine (MirroredStrategy).

    Args:
        devices: device names; unset means all local GPUs, or the CPU if none.
        cross_device_ops: how gradients are all-reduced ("auto" lets
            TensorFlow choose).
    """
    import tensorflow as tf

    if devices is None:
        devices = _gpus() or ["/cpu:0"]
    if not devices:
        raise StrategyError("mirrored: devices is an empty list")
    ops = {
        "auto": None,
        "nccl": lambda: tf.distribute.NcclAllReduce(),
        "hierarchical_copy": lambda: tf.distribute.HierarchicalCopyAllReduce(),
        "reduce_to_one_device": lambda: tf.distribute.ReductionToOneDevice(),
    }[cross_device_ops]
    return tf.distribute.MirroredStrategy(devices=_check_devices(devices),
                                          cross_device_ops=ops() if ops else None)


@cifarkit.hookimpl
def register_strategies(register):
    register(one_device)
    register(mirrored)
