"""Built-in distribution strategies (tf.distribute: the one place for TensorFlow code)."""

from __future__ import annotations

import glob
import json
import os
import re
import threading
from typing import Annotated, Literal

import cifarkit
from cifarkit import Range, StrategyError
from cifarkit.errors import first_line


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


def tpu(tpu: str | None = None, zone: str | None = None, project: str | None = None,
        timeout_s: Annotated[float, Range(1, 3600)] = 60.0):
    """Train on a Cloud TPU (TPUStrategy): connect with TPUClusterResolver, initialise the TPU.

    Args:
        tpu: TPU name or address ("grpc://10.0.0.2:8470", "my-tpu"); unset:
            the TPU_NAME environment variable, else the TPU VM's local TPU.
        zone: GCE zone of a TPU given by name (unset: from the environment).
        project: GCP project of a TPU given by name (unset: from the environment).
        timeout_s: give up connecting after this many seconds.
    """
    import tensorflow as tf

    name = tpu or os.environ.get("TPU_NAME")
    local = glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*")
    if not name and not local:
        raise StrategyError(
            "tpu: no TPU to connect to: strategy.tpu is unset, TPU_NAME is unset, and this "
            "machine has no local TPU devices (/dev/accel*, /dev/vfio/*); set strategy.tpu to "
            "the TPU's name or grpc:// address, or run on a Cloud TPU VM")
    tried = f"TPU {name!r}" if name else "the local TPU (" + ", ".join(local) + ")"
    outcome: dict = {}

    def connect():
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu=name or "local", zone=zone, project=project)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            outcome["resolver"] = resolver
        except Exception as exc:  # resolver, network and initialisation errors
            outcome["error"] = first_line(exc)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise StrategyError(f"tpu: no answer from {tried} within {timeout_s:g} s")
    if "error" in outcome:
        raise StrategyError(f"tpu: cannot use {tried}: {outcome['error']}")
    return tf.distribute.TPUStrategy(outcome["resolver"])


def multi_worker_mirrored(workers: list[str] | None = None,
                          task_index: Annotated[int, Range(0)] | None = None,
                          communication: Literal["auto", "ring", "nccl"] = "auto",
                          timeout_s: Annotated[float, Range(1)] | None = 600.0):
    """Synchronous data parallelism across machines (MultiWorkerMirroredStrategy).

    Start one ``cifarkit run`` per worker with the same recipe; worker 0 is
    the chief and alone writes the run directory. The cluster comes from
    ``workers`` + ``task_index`` (e.g. ``--set strategy.task_index=1``) or,
    when they are unset, from the ``TF_CONFIG`` environment variable.

    Args:
        workers: every worker's "host:port", the same list on every worker.
        task_index: this worker's position in ``workers``.
        communication: collective implementation ("ring" on CPUs, "nccl" on GPUs).
        timeout_s: seconds a collective (and start-up) may wait for the other workers.
    """
    import tensorflow as tf

    if workers is not None:
        if task_index is None:
            raise StrategyError("multi_worker_mirrored: strategy.workers is set but "
                                "strategy.task_index is not (this worker's position in it)")
        if not workers or task_index >= len(workers):
            raise StrategyError(f"multi_worker_mirrored: task_index {task_index} is not a "
                                f"position in workers ({len(workers)} entries)")
        for address in workers:
            if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}", address):
                raise StrategyError(f"multi_worker_mirrored: worker {address!r} is not host:port")
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec({"worker": list(workers)}), task_type="worker",
            task_id=task_index, rpc_layer="grpc")
    else:
        config = os.environ.get("TF_CONFIG")
        if not config:
            raise StrategyError("multi_worker_mirrored: no cluster: set strategy.workers and "
                                "strategy.task_index, or the TF_CONFIG environment variable")
        try:
            json.loads(config)["cluster"]
        except (ValueError, KeyError, TypeError):
            raise StrategyError("multi_worker_mirrored: TF_CONFIG is not JSON with a "
                                "\"cluster\" table") from None
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    implementation = {
        "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
        "ring": tf.distribute.experimental.CommunicationImplementation.RING,
        "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    }[communication]
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=implementation, timeout_seconds=timeout_s)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver,
                                                         communication_options=options)
    except (RuntimeError, ValueError) as exc:
        raise StrategyError(f"multi_worker_mirrored: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


@cifarkit.hookimpl
def register_strategies(register):
    register(one_device)
    register(mirrored)
    register(tpu)
    register(multi_worker_mirrored)
