"""Built-in distribution strategies, one form per backend under one name:
tf.distribute on the TensorFlow backend, keras.distribution on the JAX backend.

Each name means the same on both backends and takes the same parameters:
``one_device`` (one device), ``mirrored`` and its alias ``data_parallel``
(synchronous data parallelism over the local devices), ``tpu`` (the TPU
cores) and ``multi_worker_mirrored`` (synchronous data parallelism over
several processes or machines). cifarkit calls the form for the run's
backend (``register(..., backend=...)``); nothing here asks which backend runs.
"""

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


def _jax_devices(devices: list[str]) -> list[str]:
    """Device names ('/gpu:0', 'GPU:0', 'gpu:0') as keras.distribution names them,
    checked against the devices JAX sees."""
    import keras

    available = keras.distribution.list_devices()
    out = []
    for device in devices:
        kind, _, index = _canonical(device).removeprefix("/device:").partition(":")
        name = f"{kind.lower()}:{index}"
        if name not in available:
            raise StrategyError(f"device {device!r} is not present on this machine "
                                f"(available: {', '.join(available) or 'none'})")
        out.append(name)
    return out


def _data_parallel(devices: list[str]):
    import keras

    return keras.distribution.DataParallel(devices=devices)


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

    On TensorFlow a OneDeviceStrategy; on JAX keras.distribution over that device.

    Args:
        device: "auto" (the first GPU, else the CPU) or a device name such as
            "/gpu:1" or "/cpu:0".
    """
    import tensorflow as tf

    if device == "auto":
        gpus = _gpus()
        device = gpus[0] if gpus else "/cpu:0"
    return tf.distribute.OneDeviceStrategy(_check_devices([device])[0])


def one_device_jax(device: str = "auto"):
    """Train on one device: a GPU if there is one, else the CPU (keras.distribution
    over that one device).

    Args:
        device: "auto" (the first accelerator, else the CPU) or a device name such
            as "/gpu:1" or "/cpu:0".
    """
    import keras

    if device == "auto":
        return _data_parallel(keras.distribution.list_devices()[:1])
    return _data_parallel(_jax_devices([device]))


_CROSS_DEVICE_OPS = Literal["auto", "nccl", "hierarchical_copy", "reduce_to_one_device"]


def mirrored(devices: list[str] | None = None, cross_device_ops: _CROSS_DEVICE_OPS = "auto"):
    """Synchronous data parallelism over the devices of one machine.

    On TensorFlow a MirroredStrategy; on JAX keras.distribution's DataParallel
    (``cross_device_ops`` must stay "auto" there: XLA chooses the all-reduce).

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


def mirrored_jax(devices: list[str] | None = None, cross_device_ops: _CROSS_DEVICE_OPS = "auto"):
    """Synchronous data parallelism over the devices of one machine (keras.distribution
    DataParallel): the batch is split across the devices, the weights are replicated.

    Args:
        devices: device names such as "/gpu:0"; unset means every local
            accelerator (all GPUs or TPU cores), else the CPU.
        cross_device_ops: must stay "auto" on this backend (XLA chooses the
            all-reduce).
    """
    import keras

    if cross_device_ops != "auto":
        raise StrategyError(f"mirrored: cross_device_ops = {cross_device_ops!r} chooses a "
                            "tf.distribute all-reduce; on the jax backend XLA chooses it, "
                            "so leave it \"auto\"")
    if devices is not None and not devices:
        raise StrategyError("mirrored: devices is an empty list")
    return _data_parallel(keras.distribution.list_devices() if devices is None
                          else _jax_devices(devices))


def tpu(tpu: str | None = None, zone: str | None = None, project: str | None = None,
        timeout_s: Annotated[float, Range(1, 3600)] = 60.0):
    """Train on a Cloud TPU: connect to it and initialise it (TPUStrategy; on JAX, its cores).

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


def tpu_jax(tpu: str | None = None, zone: str | None = None, project: str | None = None,
            timeout_s: Annotated[float, Range(1, 3600)] = 60.0):
    """Train on the TPU cores JAX sees (a Cloud TPU VM with JAX's TPU build): data
    parallelism over them.

    Args:
        tpu: must stay unset on this backend (JAX uses the VM's own TPU).
        zone: must stay unset on this backend.
        project: must stay unset on this backend.
        timeout_s: unused on this backend (JAX finds its TPU when it starts).
    """
    import keras

    named = [k for k, v in (("tpu", tpu), ("zone", zone), ("project", project)) if v]
    if named:
        raise StrategyError(f"tpu: strategy.{named[0]} connects to a remote TPU, which only the "
                            "tensorflow backend does; on the jax backend run on the TPU VM and "
                            "leave it unset")
    cores = [d for d in keras.distribution.list_devices() if d.startswith("tpu:")]
    if not cores:
        raise StrategyError("tpu: JAX sees no TPU on this machine (devices: "
                            f"{', '.join(keras.distribution.list_devices())}); use one_device "
                            "or data_parallel")
    return _data_parallel(cores)


def data_parallel(devices: list[str] | None = None):
    """Synchronous data parallelism over the devices of one machine (mirrored's other name).

    ``mirrored`` under its keras.distribution name, on both backends.

    Args:
        devices: device names such as "/gpu:0"; unset means all local GPUs (on
            JAX every local accelerator), else the CPU.
    """
    return mirrored(devices)


def data_parallel_jax(devices: list[str] | None = None):
    """Synchronous data parallelism over the devices of one machine (mirrored's other name).

    keras.distribution's DataParallel: ``mirrored`` under its keras.distribution name.

    Args:
        devices: device names such as "/gpu:0"; unset means every local
            accelerator (all GPUs or TPU cores), else the CPU.
    """
    return mirrored_jax(devices)


def multi_worker_mirrored(workers: list[str] | None = None,
                          task_index: Annotated[int, Range(0)] | None = None,
                          communication: Literal["auto", "ring", "nccl"] = "auto",
                          timeout_s: Annotated[float, Range(1)] | None = 600.0):
    """Synchronous data parallelism across processes or machines.

    On TensorFlow a MultiWorkerMirroredStrategy; on JAX ``jax.distributed`` with
    keras.distribution's DataParallel over every process's devices.

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

    if _cluster(workers, task_index) is not None:
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec({"worker": list(workers)}), task_type="worker",
            task_id=task_index, rpc_layer="grpc")
    else:
        _tf_config()
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


def _cluster(workers: list[str] | None, task_index: int | None) -> tuple[list[str], int] | None:
    """``(workers, task_index)`` from the recipe, checked; None when unset (TF_CONFIG)."""
    if workers is None:
        return None
    if task_index is None:
        raise StrategyError("multi_worker_mirrored: strategy.workers is set but "
                            "strategy.task_index is not (this worker's position in it)")
    if not workers or task_index >= len(workers):
        raise StrategyError(f"multi_worker_mirrored: task_index {task_index} is not a "
                            f"position in workers ({len(workers)} entries)")
    for address in workers:
        if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}", address):
            raise StrategyError(f"multi_worker_mirrored: worker {address!r} is not host:port")
    return list(workers), task_index


def _tf_config() -> tuple[list[str], int]:
    """``(workers, task_index)`` from the TF_CONFIG environment variable (a ``chief``
    task, if any, first)."""
    config = os.environ.get("TF_CONFIG")
    if not config:
        raise StrategyError("multi_worker_mirrored: no cluster: set strategy.workers and "
                            "strategy.task_index, or the TF_CONFIG environment variable")
    try:
        doc = json.loads(config)
        cluster = doc["cluster"]
        members = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
        task = doc.get("task", {})
        offset = len(cluster.get("chief", [])) if task.get("type", "worker") == "worker" else 0
        index = offset + int(task.get("index", 0))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise StrategyError("multi_worker_mirrored: TF_CONFIG is not JSON with a "
                            "\"cluster\" table") from None
    if not members or not 0 <= index < len(members):
        raise StrategyError("multi_worker_mirrored: TF_CONFIG's task is not one of its "
                            "cluster's workers")
    return members, index


def multi_worker_mirrored_jax(workers: list[str] | None = None,
                              task_index: Annotated[int, Range(0)] | None = None,
                              communication: Literal["auto", "ring", "nccl"] = "auto",
                              timeout_s: Annotated[float, Range(1)] | None = 600.0):
    """Synchronous data parallelism across processes or machines: ``jax.distributed``
    with keras.distribution's DataParallel over every process's devices.

    Start one ``cifarkit run`` per worker with the same recipe; worker 0 is the
    chief (and JAX's coordinator, at its address) and alone writes the run
    directory. The cluster comes from ``workers`` + ``task_index`` or, when
    they are unset, from ``TF_CONFIG``.

    Args:
        workers: every worker's "host:port", the same list on every worker;
            the first is the coordinator's address.
        task_index: this worker's position in ``workers``.
        communication: "auto", "ring" (CPUs: gloo's collectives) or "nccl"
            (GPUs: JAX uses NCCL there).
        timeout_s: seconds start-up may wait for the other workers.
    """
    import jax

    found = _cluster(workers, task_index) or _tf_config()
    members, index = found
    if not jax.distributed.is_initialized():
        try:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            jax.distributed.initialize(coordinator_address=members[0],
                                       num_processes=len(members), process_id=index,
                                       initialization_timeout=int(timeout_s or 600))
        except Exception as exc:  # coordinator unreachable, timeout, already started
            raise StrategyError(f"multi_worker_mirrored: cannot join the cluster at "
                                f"{members[0]} as worker {index}: {first_line(exc)}") from None
    import keras

    return keras.distribution.DataParallel(devices=keras.distribution.list_devices(),
                                           auto_shard_dataset=False)  # cifarkit shards itself


@cifarkit.hookimpl
def register_strategies(register):
    for name, on_tensorflow, on_jax in (
            ("one_device", one_device, one_device_jax),
            ("mirrored", mirrored, mirrored_jax),
            ("data_parallel", data_parallel, data_parallel_jax),
            ("tpu", tpu, tpu_jax),
            ("multi_worker_mirrored", multi_worker_mirrored, multi_worker_mirrored_jax)):
        register(on_tensorflow, name=name, backend="tensorflow")
        if on_jax is not None:
            register(on_jax, name=name, backend="jax")
