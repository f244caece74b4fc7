from typing import Annotated

import cifarkit
from cifarkit import Range, StrategyError


def split_cpu(replicas: Annotated[int, Range(1, 64)] = 2):
    """Mirror training over several logical CPU devices: data parallelism on a laptop.

    Splits the CPU into ``replicas`` logical devices and wraps a
    MirroredStrategy over them, so multi-replica code paths (global batch
    split across replicas, gradient all-reduce) can be tried without GPUs.

    Args:
        replicas: number of logical CPU devices to mirror over.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu) or []
    if len(configured) < replicas:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
        except RuntimeError:
            raise StrategyError(
                "split_cpu: TensorFlow's devices were already initialised in this process; "
                "use split_cpu in a fresh process (e.g. the cifarkit command)") from None
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:replicas]
    return tf.distribute.MirroredStrategy(devices)


@cifarkit.hookimpl
def register_strategies(register):
    register(split_cpu, backend="tensorflow")  # TensorFlow code: declared as such
