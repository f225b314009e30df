"""The homework's small CNN for 28x28 grey images (420,906 parameters with 10 classes).

The definition of the model, written with Flax's layers as the homework lists it; the CPU
implementation in hw2/models/fast/cnn.py computes the same function with the same parameters
(tests/test_models.py holds it to this one).
"""
import flax.linen as nn


class CNN(nn.Module):
  """Images [B, 28, 28, 1] -> logits [B, num_classes]."""
  num_classes: int = 10
  dropout_rate: float = 0.3

  def setup(self):
    self.conv1 = nn.Conv(8, (5, 5), padding=2)  # -> [B, 28, 28, 8]
    self.conv2 = nn.Conv(16, (3, 3), padding='VALID')  # [B, 14, 14, 8] -> [B, 12, 12, 16]
    self.dense1 = nn.Dense(600)
    self.dropout = nn.Dropout(self.dropout_rate)
    self.dense2 = nn.Dense(120)
    self.dense3 = nn.Dense(self.num_classes)

  def first_layer_maps(self, images):
    """The first convolution's activation maps, before its ReLU: [B, 28, 28, 8]."""
    return self.conv1(images)

  def __call__(self, images, train=False):
    """`train` enables dropout (RNG collection 'dropout')."""
    x = nn.max_pool(nn.relu(self.conv1(images)), (2, 2), strides=(2, 2))  # [B, 14, 14, 8]
    x = nn.max_pool(nn.relu(self.conv2(x)), (2, 2), strides=(2, 2))  # [B, 6, 6, 16]
    x = x.reshape(x.shape[0], -1)  # [B, 576]
    x = nn.relu(self.dense1(x))  # [B, 600]
    x = self.dropout(x, deterministic=not train)
    x = nn.relu(self.dense2(x))  # [B, 120]
    return self.dense3(x)
