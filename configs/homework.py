"""The whole homework in one command: question 1 (theory), question 2 (the CNN learning-rate
sweep), question 3 (translation without and with attention) and 3 (c) (the beam table), each part
in its own subfolder of the workdir and resumable, then WORKDIR/report.md with every table and
figure beside the homework report's numbers.

  python main.py --config configs/homework.py --workdir runs/homework
  python main.py --config configs/homework.py --workdir runs/homework --mode report

The experiment configs nest inside, so every override works as usual:
  --config.cnn.num_epochs=2 --config.translation.model.hidden_size=64 --config.beam_sizes='(1, 4)'
Offline, the CNN part trains on Fashion-MNIST or on the KMNIST test images shipped in data/:
  --config.cnn.dataset=fashion_mnist --config.cnn.data_dir=/usr/share/datasets/fashion-mnist
  --config.cnn.data_dir=data/kmnist --config.cnn.split_test_images=2000 \
      --config.cnn.validation_size=1000
"""
import ml_collections

from configs import cnn
from configs import seq2seq
from configs import theory


def get_config():
  config = ml_collections.ConfigDict()
  config.task = 'homework'
  config.theory = theory.get_config()
  config.cnn = cnn.get_config()
  config.learning_rates = (1e-5, 5e-4, 1e-2)  # Question 2's sweep.
  config.translation = seq2seq.get_config()  # Trained twice: model.use_attention False, True.
  config.beam_sizes = (1, 2, 4, 8)  # Question 3 (c); 1 is greedy decoding.
  config.length_penalties = (0.0, 0.6, 1.0)
  return config
