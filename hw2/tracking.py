"""What a training run reports while it runs: metrics.jsonl and TensorBoard event files.

One small writer for the loop: `progress` (training loss, examples/s and learning rate at a
global step), `epoch` (one record of metrics.jsonl, mirrored as scalars `epoch/<name>` at step =
epoch), `images` (the run's PNG figures, at the end). Events go to WORKDIR/tensorboard/, written
with TensorBoard's own event-file writer (no TensorFlow import); `tensorboard --logdir runs/`
shows every run of a folder. Only process 0 of a multi-process run writes.
"""
import os
import time

from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from hw2 import parallel
from hw2 import records

EVENTS_DIR = 'tensorboard'


class Tracker:
  """The metrics of one run: metrics.jsonl (the record) and TensorBoard events (to watch)."""

  def __init__(self, workdir, history):
    """`history`: the records of the epochs already done (a resumed run keeps them)."""
    self.workdir = workdir
    self.history = list(history)
    self._events = (EventFileWriter(os.path.join(workdir, EVENTS_DIR))
                    if parallel.is_writer() else None)
    records.write_metrics(workdir, self.history)

  def _write(self, step, values):
    if self._events is None:
      return
    summary = summary_pb2.Summary(value=values)
    self._events.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

  def progress(self, step, scalars):
    """Scalars {name: float} at global optimizer step `step`, as `train/<name>`."""
    self._write(step, [summary_pb2.Summary.Value(tag=f'train/{k}', simple_value=float(v))
                       for k, v in scalars.items()])

  def epoch(self, record):
    """Appends one epoch's record to metrics.jsonl (rewritten atomically) and to the events."""
    self.history.append(record)
    records.write_metrics(self.workdir, self.history)
    self._write(record['epoch'], [
        summary_pb2.Summary.Value(tag=f'epoch/{k}', simple_value=float(v))
        for k, v in record.items() if k != 'epoch' and isinstance(v, (int, float))])
    if self._events is not None:
      self._events.flush()

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
