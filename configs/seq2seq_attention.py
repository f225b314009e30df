"""configs/seq2seq.py with bilinear attention (the homework's question 3 (b)).

  python main.py --config configs/seq2seq_attention.py --workdir runs/s2s_attn
"""
from configs import seq2seq


def get_config():
  config = seq2seq.get_config()
  config.model.use_attention = True
  return config
