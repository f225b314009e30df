"""The homework's character-level Spanish -> English translation (question 3), no attention.

  python main.py --config configs/seq2seq.py --workdir runs/s2s
  python main.py --config configs/seq2seq.py --workdir runs/s2s_attn --config.model.use_attention=True
  python main.py --config configs/seq2seq.py --workdir runs/s2s_attn --mode eval \
      --config.decode.beam_size=4
  python main.py --config configs/seq2seq.py --workdir runs/s2s_attn --mode translate \
      --text "vine por ustedes ."

--mode eval and --mode translate take the model and data settings from the workdir's
config.json; only the decoding settings (config.decode.*, eval_batch_size) come from the command
line.
"""
import os

import ml_collections

from configs import training

# The homework's files, shipped with the repository (data/README.md); found from any directory.
DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data',
                        'spa-eng')


def get_config():
  config = ml_collections.ConfigDict()
  config.task = 'translation'
  # Data: tab-separated pairs; the homework's files are english<TAB>spanish<TAB>42.
  config.data_dir = DATA_DIR
  config.train_file = 'train-eng-spa.txt'
  config.validation_file = 'val-eng-spa.txt'
  config.test_file = 'test-eng-spa.txt'
  config.source_column = 1  # Spanish
  config.target_column = 0  # English
  config.normalize = 'homework'  # or 'none' (NFC only) for any script.
  config.max_length = 19  # Training pairs with a side longer than this are dropped ("< 20").

  # The model (hw2/models/seq2seq.py): config.model reaches its constructor as keyword arguments.
  # impl: 'auto' or 'reference' (the translators have one implementation, their definition).
  config.model = ml_collections.ConfigDict()
  config.model.impl = 'auto'
  config.model.architecture = 'lstm'  # configs/transformer.py: 'transformer'.
  config.model.hidden_size = 128  # Also the embedding size; 64 encoder units per direction.
  config.model.dropout_rate = 0.3
  config.model.use_attention = False

  config.optimizer = 'adam'
  config.learning_rate = 0.003
  config.batch_size = 64
  config.num_epochs = 50
  config.seed = 42
  training.add_training_options(config)  # Schedules, clipping, decay, ...: off.
  config.steps_per_call = 0  # 0: one jitted call per epoch.

  config.eval_batch_size = 256  # Sentences decoded together (attention memory stays in cache).
  config.num_attention_plots = 4
  config.num_samples = 3  # Validation translations logged (and sent to TensorBoard) each epoch.
  config.decode = ml_collections.ConfigDict()
  config.decode.beam_size = 1  # 1 = greedy decoding.
  config.decode.length_penalty = 0.0  # GNMT alpha; 0 = none.
  config.decode.max_length = 50  # Most characters generated per sentence (EOS included).
  config.decode.max_source_length = 200  # Longest input (characters) accepted for translation.
  config.decode.n_best = 1  # Hypotheses printed per sentence by --mode translate.
  return config
