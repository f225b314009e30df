"""Image classification with the homework's CNN (question 2)."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

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
    self._predict = parallel.jit_batched(
        lambda params, x: jnp.argmax(self.model.apply({'params': params}, x), -1),
        batch_argnums=(1,))

  def train_arrays(self):
    return {'image': self.data.train_images, 'label': self.data.train_labels}

  def init_params(self, rng):
    return self.model.init(rng, jnp.zeros((1, 28, 28, 1), jnp.float32))['params']

  def loss(self, params, batch, rng):
    logits = self.model.apply({'params': params}, batch['image'], train=True,
                              rngs={'dropout': rng})
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()

  def predict(self, params, image_array):
    """Predicted classes [N] of images [N, 28, 28, 1], in fixed-size jitted batches."""
    pending = [(self._predict(params, batch['image']), valid)  # All dispatched, then read.
               for batch, valid in batching.padded_batches({'image': image_array},
                                                           self.config.eval_batch_size)]
    if not pending:
      return np.zeros(0, np.int32)
    return np.concatenate([np.asarray(p)[:valid] for p, valid in pending])

  def evaluate(self, params, split):
    image_array, labels = self.data.split(split)
    return {'accuracy': metrics.accuracy(self.predict(params, image_array), labels)}

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
