"""hw2: the experiments of a deep-learning homework (CNN image classification, character-level
translation with beam search, and the theory behind them) in functional JAX/Flax."""
