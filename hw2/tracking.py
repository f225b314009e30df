"""What a training run reports while it runs: metrics.jsonl and TensorBoard event files.

One small writer for the loop: `progress` (training loss, examples/s and learning rate at a
global step), `epoch` (one record of metrics.jsonl, mirrored as scalars `epoch/<name>` at step =
epoch), `text` (sample translations, each epoch), `images` (the run's PNG figures, at the end).
Events go to WORKDIR/tensorboard/ as TensorBoard's own protocol buffers in its record format
(tensorboard's RecordWriter, on a plain file: its EventFileWriter and tensorboardX would import
TensorFlow or PyTorch, seconds of start-up for a run that never uses them);
`tensorboard --logdir runs/` shows every run of a folder. Only process 0 of a multi-process run
writes. This module is the one writer of metrics.jsonl: `repair_metrics` at the start of a run,
then `Tracker.epoch`.
"""
import json
import os
import socket
import time

from absl import logging
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.proto import tensor_pb2
from tensorboard.compat.proto import tensor_shape_pb2
from tensorboard.compat.proto import types_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from hw2 import parallel
from hw2 import records
from hw2.errors import UserError

EVENTS_DIR = 'tensorboard'


def write_metrics(workdir, history):
  """Replaces metrics.jsonl with `history`, one JSON object (epoch) a line.

  The loop rewrites the whole (small) file each epoch rather than appending, so a failed write
  never leaves a partial line.
  """
  records.write_atomic(os.path.join(workdir, records.METRICS_FILE),
                       ''.join(json.dumps(r, sort_keys=True) + '\n' for r in history))


def repair_metrics(workdir, history):
  """Makes metrics.jsonl hold the checkpoint's `history`: drops the records of epochs past it
  (a kill before its save) and rewrites a damaged file, saying so."""
  try:
    on_disk = records.read_metrics(workdir)
  except records.DamagedFile as e:
    logging.warning('%s; rewritten from the checkpoint\'s history', e)
    on_disk = None
  if on_disk is not None and on_disk[:len(history)] != history:  # Lost or changed records.
    logging.warning('%s does not hold the %d epochs of the checkpoint\'s history; rewritten '
                    'from it', os.path.join(workdir, records.METRICS_FILE), len(history))
  if on_disk != history:
    write_metrics(workdir, history)


class Tracker:
  """The metrics of one run: metrics.jsonl (the record) and TensorBoard events (to watch)."""

  def __init__(self, workdir, history):
    """`history`: the records of the epochs already done (a resumed run keeps them)."""
    self.workdir = workdir
    self.history = list(history)
    write_metrics(workdir, self.history)
    self._events = None
    if parallel.is_writer():
      directory = os.path.join(workdir, EVENTS_DIR)
      self._path = os.path.join(directory, f'events.out.tfevents.{int(time.time())}.'
                                           f'{socket.gethostname()}.{os.getpid()}')
      try:
        os.makedirs(directory, exist_ok=True)
        self._events = RecordWriter(open(self._path, 'wb'))  # pylint: disable=consider-using-with
      except OSError as e:
        raise UserError(f'could not write {self._path}: {e.strerror}') from None
      self._add(event_pb2.Event(wall_time=time.time(), file_version='brain.Event:2'))

  def _add(self, event):
    try:
      self._events.write(event.SerializeToString())
    except OSError as e:
      raise UserError(f'could not write {self._path}: {e.strerror}') from None

  def _write(self, step, values):
    if self._events is not None:
      self._add(event_pb2.Event(wall_time=time.time(), step=step,
                                summary=summary_pb2.Summary(value=values)))

  def progress(self, step, scalars):
    """Scalars {name: float} at global optimizer step `step`, as `train/<name>`."""
    self._write(step, [summary_pb2.Summary.Value(tag=f'train/{k}', simple_value=float(v))
                       for k, v in scalars.items()])

  def epoch(self, record):
    """Appends one epoch's record to metrics.jsonl (rewritten atomically) and to the events."""
    self.history.append(record)
    write_metrics(self.workdir, self.history)
    self._write(record['epoch'], [
        summary_pb2.Summary.Value(tag=f'epoch/{k}', simple_value=float(v))
        for k, v in record.items() if k != 'epoch' and isinstance(v, (int, float))])
    if self._events is not None:
      self._events.flush()

  def text(self, step, tag, markdown):
    """A text summary (TensorBoard's text plugin renders markdown) at `step`."""
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[markdown.encode()],
                                    tensor_shape=tensor_shape_pb2.TensorShapeProto())
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name='text'))
    self._write(step, [summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)])

  def images(self, step, paths):
    """PNG files, each as an image summary named after its file, at `step`."""
    values = []
    for path in paths:
      if not os.path.exists(path):
        continue
      with open(path, 'rb') as f:
        png = f.read()
      width, height = int.from_bytes(png[16:20], 'big'), int.from_bytes(png[20:24], 'big')
      image = summary_pb2.Summary.Image(height=height, width=width, colorspace=4,
                                        encoded_image_string=png)
      values.append(summary_pb2.Summary.Value(tag=os.path.splitext(os.path.basename(path))[0],
                                              image=image))
    self._write(step, values)

  def close(self):
    if self._events is not None:
      self._events.close()
