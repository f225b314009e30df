"""Image classification with the homework's CNN (question 2)."""
import os

import jax
import jax.numpy as jnp
import numpy as np

from hw2 import losses
from hw2 import metrics
from hw2 import parallel
from hw2 import plots
from hw2.data import batching
from hw2.data import images
from hw2 import models
from hw2.tasks import base


class Classification(base.Task):
  """CNN on a 28x28 grey 10-class data set (KMNIST, Fashion-MNIST or MNIST)."""
  selection_metric = 'accuracy'
  selection_mode = 'max'

  def __init__(self, config, workdir, mode):
    super().__init__(config, workdir, mode)
    self.data = images.load_image_splits(config)
    self.model = models.build('cnn', config.model, num_classes=images.NUM_CLASSES)
    self._predict = parallel.jit_batched(self._predictions_and_losses, batch_argnums=(1, 2))

  def _predictions_and_losses(self, params, images, labels):
    """Predicted classes [B] and cross-entropy [B] of images [B, 28, 28, 1], labels [B]."""
    logits = self.model.apply({'params': params}, images)
    return jnp.argmax(logits, -1), losses.cross_entropy(logits, labels)

  def train_arrays(self):
    return {'image': self.data.train_images, 'label': self.data.train_labels}

  def init_params(self, rng):
    return self.model.init(rng, jnp.zeros((1, 28, 28, 1), jnp.float32))['params']

  def loss(self, params, batch, rng):
    logits = self.model.apply({'params': params}, batch['image'], train=True,
                              rngs={'dropout': rng})
    return losses.cross_entropy(logits, batch['label'], self.config.label_smoothing).mean()

  def predict(self, params, image_array, labels):
    """Predicted classes [N] and cross-entropy [N] of images [N, 28, 28, 1] with labels [N], in
    fixed-size jitted batches."""
    pending = [(self._predict(params, batch['image'], batch['label']), valid)  # All dispatched.
               for batch, valid in batching.padded_batches(
                   {'image': image_array, 'label': labels}, self.config.eval_batch_size)]
    if not pending:
      return np.zeros(0, np.int32), np.zeros(0, np.float32)
    return tuple(np.concatenate([np.asarray(p[i])[:valid] for p, valid in pending])
                 for i in (0, 1))

  def evaluate(self, params, split):
    """Accuracy and the mean cross-entropy (without label smoothing) of the split."""
    image_array, labels = self.data.split(split)
    predictions, cross_entropy = self.predict(params, image_array, labels)
    return {'accuracy': metrics.accuracy(predictions, labels),
            'loss': float(cross_entropy.mean()) if len(labels) else float('nan')}

  def split_sizes(self):
    return {name: len(self.data.split(name)[1]) for name in ('train', 'validation', 'test')}

  def compilation_counts(self):
    return {'predict': self._predict.compilations()}

  def write_outputs(self, params, results):
    """The 8 first-layer activation maps (before ReLU) of training example 0, beside it."""
    image = self.data.train_images[:1]
    maps = self.model.apply({'params': params}, image, method='first_layer_maps')
    plots.plot_activation_maps(image[0, ..., 0], np.asarray(maps[0]),
                               os.path.join(self.workdir, 'activation_maps.png'),
                               title=f'first convolution before ReLU (label {self.data.train_labels[0]})')
