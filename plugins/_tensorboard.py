"""TensorBoard logs without TensorFlow: the ``tensorboard`` callback on the JAX backend.

``keras.callbacks.TensorBoard`` writes through ``tf.summary`` on every
backend, and a JAX run never imports TensorFlow. This callback writes the
same event files with the ``tensorboard`` package's own writer and protocol
buffers: per-epoch (or per-batch) scalars in ``train/`` and ``validation/``
under the same tags Keras uses, weight histograms, and the conceptual model
graph (the model's JSON, which TensorBoard's graph dashboard draws).
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import keras
import numpy as np

# tensorboard's file I/O goes through `tensorboard.compat.tf`, which imports
# TensorFlow when it can; the marker module `tensorboard.compat.notf` (what
# tensorboard's own no-TensorFlow build adds) makes it use its stub instead.
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2  # noqa: E402
from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: E402

from cifarkit.backends import sync_weights


def _histogram(values: np.ndarray, bins: int = 30) -> summary_pb2.HistogramProto:
    values = values.astype(np.float64).ravel()
    counts, edges = np.histogram(values, bins=bins)
    return summary_pb2.HistogramProto(
        min=float(values.min()), max=float(values.max()), num=float(values.size),
        sum=float(values.sum()), sum_squares=float(np.square(values).sum()),
        bucket_limit=[float(e) for e in edges[1:]], bucket=[float(c) for c in counts])


class EventWriter(keras.callbacks.Callback):
    """Write TensorBoard event files under ``log_dir`` (``train/`` and ``validation/``).

    Args:
        log_dir: where to write.
        histogram_freq: epochs between weight histograms (0: none).
        write_graph: write the model's conceptual graph.
        update_freq: "epoch" or "batch" (scalars after every step).
    """

    def __init__(self, log_dir: str, histogram_freq: int = 0, write_graph: bool = True,
                 update_freq: str = "epoch"):
        super().__init__()
        self.log_dir, self.histogram_freq = Path(log_dir), histogram_freq
        self.write_graph, self.update_freq = write_graph, update_freq
        self._writers: dict[str, EventFileWriter] = {}
        self._step = 0

    def _writer(self, split: str) -> EventFileWriter:
        if split not in self._writers:
            self._writers[split] = EventFileWriter(str(self.log_dir / split))
        return self._writers[split]

    def _write(self, split: str, step: int, values: list) -> None:
        event = event_pb2.Event(wall_time=time.time(), step=step,
                                summary=summary_pb2.Summary(value=values))
        self._writer(split).add_event(event)

    def _scalars(self, prefix: str, step: int, logs: dict) -> None:
        for split, keep in (("train", lambda k: not k.startswith("val_")),
                            ("validation", lambda k: k.startswith("val_"))):
            values = [summary_pb2.Summary.Value(tag=f"{prefix}_{k.removeprefix('val_')}",
                                                simple_value=float(v))
                      for k, v in logs.items() if keep(k) and np.ndim(v) == 0]
            if values:
                self._write(split, step, values)

    def on_train_begin(self, logs=None):
        if self.write_graph:
            graph = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
                plugin_name="graph_keras_model", content=b"1"))
            tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING,
                                            string_val=[self.model.to_json().encode()])
            self._write("train", 0, [summary_pb2.Summary.Value(tag="keras", metadata=graph,
                                                               tensor=tensor)])

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.update_freq == "batch" and logs:
            self._scalars("batch", self._step, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._scalars("epoch", epoch, dict(logs or {}))
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            sync_weights(self.model)
            self._write("train", epoch, [
                summary_pb2.Summary.Value(tag=f"{w.path}/histogram",
                                          histo=_histogram(keras.ops.convert_to_numpy(w)))
                for w in self.model.weights])
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
