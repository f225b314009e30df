"""Past the homework: every number a mean +- sample standard deviation over seeds.

- An ablation of the translator with attention: the homework's settings, then one training option
  more per row (`ablation`, each a group of fields set to configs/seq2seq_tuned.py's values), up
  to the tuned translator; greedy and beam-search test metrics and training time per row.
- The Transformer of configs/transformer.py on the same data, in the same table.
- The CNN at the learning rate where the homework's run collapsed (lr 1e-2), without and with
  warmup and clipping: how often does it collapse?

  python main.py --config configs/beyond.py --workdir runs/beyond
  python main.py --config configs/beyond.py --workdir runs/beyond --mode report

Each part resumes (hw2/parts.py); runs take hours on a CPU. The report of a full run is
docs/beyond/report.md. Offline, the CNN trains on the KMNIST test images shipped in data/.
"""
import ml_collections

from configs import cnn
from configs import seq2seq_attention
from configs import seq2seq_tuned
from configs import transformer


def get_config():
  config = ml_collections.ConfigDict()
  config.task = 'beyond'
  config.seeds = (1, 2, 3)
  config.beam_size = 8  # The beam of the beam-search columns (length penalty below).
  config.length_penalty = 0.0
  config.translation = seq2seq_attention.get_config()  # The homework's settings: the first row.
  config.tuned = seq2seq_tuned.get_config()  # The last row.
  # The rows between: each adds its fields (comma-separated) at the tuned translator's values.
  config.ablation = ('ema_decay', 'weight_decay', 'num_epochs', 'learning_rate',
                     'model.dropout_rate')
  config.transformer = transformer.get_config()
  config.cnn = cnn.get_config()
  config.cnn.data_dir = cnn.KMNIST_TEST_DIR
  config.cnn.split_test_images = 2000
  config.cnn.validation_size = 1000
  config.cnn.learning_rate = 1e-2
  config.cnn_stabilised = ml_collections.ConfigDict({'warmup_steps': 500, 'grad_clip_norm': 1.0})
  return config
