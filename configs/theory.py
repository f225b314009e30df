"""The homework's question 1 checked numerically (no training).

  python main.py --config configs/theory.py --workdir runs/theory

Prints convolution-as-matrix errors, conv vs fully connected parameter counts and identity
self-attention errors; writes WORKDIR/theory.json and WORKDIR/conv_matrix_sparsity.png.
"""
import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.task = 'theory'
  config.seed = 0
  config.num_classes = 3
  # (H, W, M, N, stride, padding)
  config.conv_cases = [(28, 28, 5, 5, 1, 0), (6, 6, 3, 3, 1, 0), (7, 9, 2, 4, 1, 0),
                       (28, 28, 5, 5, 2, 2), (10, 7, 3, 2, 3, 1)]
  # (H, W, M, N)
  config.count_cases = [(28, 28, 5, 5), (28, 28, 3, 3), (32, 32, 5, 5), (9, 7, 2, 4)]
  # (H, W) of the image whose pixels attend to each other
  config.attention_cases = [(4, 4), (28, 28)]
  config.sparsity_case = (6, 6, 3, 3)
  return config
