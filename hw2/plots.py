"""Matplotlib figures, each function writing one PNG. Figures are made as `Figure` objects
without pyplot, so no backend is chosen and no display needed, and importing this module leaves
matplotlib's global state as it was (a notebook keeps its own backend)."""
import os

from matplotlib import ticker
from matplotlib.figure import Figure
import numpy as np

from hw2 import parallel
from hw2.errors import UserError


def _save(fig, path):
  """Writes the figure (in process 0 of a multi-process run only)."""
  try:
    if parallel.is_writer():
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      fig.savefig(path, dpi=100, bbox_inches='tight')
  except OSError as e:
    raise UserError(f'could not write {path}: {e.strerror or e}') from None


def plot_curve(epochs, values, ylabel, path, title=None):
  """Line plot of one per-epoch quantity: epochs [E], values [E]."""
  plot_curves({None: (epochs, values)}, ylabel, path, title)


def plot_curves(series, ylabel, path, title=None, log_y=False):
  """Several per-epoch curves in one plot: series {label: (epochs [E], values [E])}."""
  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
  for label, (epochs, values) in series.items():
    ax.plot(epochs, values, marker='o', markersize=3, label=label)
  ax.set_xlabel('epoch')
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax.set_ylabel(ylabel)
  ax.set_title(title or ylabel)
  if log_y:
    ax.set_yscale('log')
  if any(label is not None for label in series):
    ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  _save(fig, path)


def plot_activation_maps(image, maps, path, title='first convolution, before ReLU'):
  """The input image [H, W] beside each of its activation maps [H, W, C]."""
  channels = maps.shape[-1]
  fig = Figure(figsize=(1.6 * (channels + 1), 2))
  axes = fig.subplots(1, channels + 1)
  axes[0].imshow(image, cmap='gray')
  axes[0].set_title('input')
  for c in range(channels):
    axes[c + 1].imshow(maps[..., c], cmap='viridis')
    axes[c + 1].set_title(f'filter {c}')
  for ax in axes:
    ax.axis('off')
  fig.suptitle(title)
  _save(fig, path)


def plot_attention(weights, source, prediction, path):
  """Heat map of attention weights [len(prediction), len(source)]; source and prediction are
  sequences of labels (characters), a space shown as an open box."""
  fig = Figure(figsize=(0.3 * len(source) + 1.5, 0.3 * len(prediction) + 1.5))
  ax = fig.subplots()
  image = ax.imshow(weights, cmap='Greys', vmin=0.0, vmax=1.0)
  ax.set_xticks(range(len(source)), labels=[c if c != ' ' else '\u2423' for c in source])
  ax.set_yticks(range(len(prediction)), labels=[c if c != ' ' else '\u2423' for c in prediction])
  ax.set_xlabel('source')
  ax.set_ylabel('prediction')
  ax.set_title('"{}" -> "{}"'.format(''.join(source), ''.join(prediction[:-1])), fontsize=9)
  fig.colorbar(image, ax=ax, fraction=0.04, pad=0.03, label='attention weight')
  _save(fig, path)


def plot_sparsity(matrix, path, title):
  """Sparsity pattern of a 2-D array: dark where the entry is non-zero."""
  matrix = np.asarray(matrix)
  fig = Figure(figsize=(6, 6 * matrix.shape[0] / max(matrix.shape[1], 1) + 0.5))
  ax = fig.subplots()
  ax.imshow(matrix != 0, cmap='Greys', interpolation='nearest', aspect='equal')
  ax.set_title(title)
  ax.set_xlabel('input index (row-major)')
  ax.set_ylabel('output index (row-major)')
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  _save(fig, path)
