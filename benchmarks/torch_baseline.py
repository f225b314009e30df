"""PyTorch baseline of the two homework models, the other side of every ratio in benchmarks/.

  python benchmarks/torch_baseline.py cnn --data data/kmnist [--batch 8] [--examples 8000] [--epochs 3]
  python benchmarks/torch_baseline.py s2s --data data/spa-eng [--attention] [--epochs 3]

Written from the homework's listings and settings, the way a student's PyTorch code runs them:
- cnn: conv(8, 5x5, pad 2) -> ReLU -> maxpool 2 -> conv(16, 3x3) -> ReLU -> maxpool 2 -> dense 600
  -> ReLU -> dropout 0.3 -> dense 120 -> ReLU -> dense 10; Adam 5e-4; shuffled minibatches.
  Trains on the training images of DATA if it has them, else on its test images.
- s2s: embedding 128 -> dropout -> BiLSTM (64 per direction, packed) -> dropout; decoder embedding
  128 -> dropout -> LSTM 128 -> [bilinear attention] -> dropout -> output layer tied to the
  embedding; Adam 0.003, batch 64; after each epoch, greedy decoding of the validation sentences
  one at a time (at most 50 characters).
Each epoch prints one JSON line: {"model", "epoch", "seconds", "examples", "examples_per_s", ...}.
Requirements: benchmarks/requirements.txt (torch, CPU build).
"""
import argparse
import gzip
import json
import os
import re
import time
import unicodedata

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def read_idx_gz(path):
  """uint8 array of a gzip IDX file (header: 2 zero bytes, type, ndim, then ndim big-endian dims)."""
  with gzip.open(path, 'rb') as f:
    raw = f.read()
  ndim = raw[3]
  shape = [int.from_bytes(raw[4 + 4 * k:8 + 4 * k], 'big') for k in range(ndim)]
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


class HomeworkCNN(nn.Module):

  def __init__(self, dropout=0.3):
    super().__init__()
    self.conv1 = nn.Conv2d(1, 8, kernel_size=5, padding=2)
    self.conv2 = nn.Conv2d(8, 16, kernel_size=3)
    self.dense1, self.dense2, self.dense3 = nn.Linear(576, 600), nn.Linear(600, 120), nn.Linear(120, 10)
    self.dropout = nn.Dropout(dropout)

  def forward(self, images):  # [B, 1, 28, 28] -> logits [B, 10]
    x = F.max_pool2d(F.relu(self.conv1(images)), 2)
    x = F.max_pool2d(F.relu(self.conv2(x)), 2)
    x = self.dropout(F.relu(self.dense1(torch.flatten(x, 1))))
    return self.dense3(F.relu(self.dense2(x)))


def benchmark_cnn(args):
  prefix = 'train' if os.path.exists(os.path.join(args.data, 'train-images-idx3-ubyte.gz')) else 't10k'
  images = read_idx_gz(os.path.join(args.data, f'{prefix}-images-idx3-ubyte.gz'))[:args.examples]
  labels = read_idx_gz(os.path.join(args.data, f'{prefix}-labels-idx1-ubyte.gz'))[:args.examples]
  x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
  y = torch.from_numpy(labels.astype(np.int64))
  torch.manual_seed(0)
  model = HomeworkCNN()
  optimizer = torch.optim.Adam(model.parameters(), lr=args.lr or 5e-4)
  steps = len(x) // args.batch
  for epoch in range(1, args.epochs + 1):
    model.train()
    order = torch.randperm(len(x))
    start = time.perf_counter()
    total = 0.0
    for step in range(steps):
      rows = order[step * args.batch:(step + 1) * args.batch]
      loss = F.cross_entropy(model(x[rows]), y[rows])
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
      total += loss.item()
    seconds = time.perf_counter() - start
    emit(model='cnn', epoch=epoch, batch_size=args.batch, seconds=seconds,
         examples=steps * args.batch, examples_per_s=steps * args.batch / seconds,
         train_loss=total / steps)


# --- Translation -------------------------------------------------------------------------------

PAD, SOS, EOS, UNK = 0, 1, 2, 3


def normalize(sentence):
  """The homework's normalisation: lower-case, no accents, a-z and . ! ? only."""
  sentence = unicodedata.normalize('NFD', sentence.lower().strip())
  sentence = ''.join(c for c in sentence if unicodedata.category(c) != 'Mn')
  sentence = re.sub(r'([.!?])', r' \1', sentence)
  return re.sub(r'[^a-z.!?]+', ' ', sentence).strip()


def read_pairs(path):
  """(spanish, english) pairs of a homework file: english<TAB>spanish<TAB>..."""
  with open(path, encoding='utf-8') as f:
    columns = [line.rstrip('\n').split('\t') for line in f if line.strip()]
  return [(normalize(c[1]), normalize(c[0])) for c in columns]


class Seq2Seq(nn.Module):

  def __init__(self, source_vocab, target_vocab, hidden=128, dropout=0.3, attention=False):
    super().__init__()
    self.source_embed = nn.Embedding(source_vocab, hidden, padding_idx=PAD)
    self.encoder = nn.LSTM(hidden, hidden // 2, batch_first=True, bidirectional=True)
    self.target_embed = nn.Embedding(target_vocab, hidden, padding_idx=PAD)
    self.decoder = nn.LSTM(hidden, hidden, batch_first=True)
    self.output_bias = nn.Parameter(torch.zeros(target_vocab))
    self.dropout = nn.Dropout(dropout)
    self.attention = attention
    if attention:
      self.attention_in = nn.Linear(hidden, hidden, bias=False)
      self.attention_out = nn.Linear(2 * hidden, hidden)

  def encode(self, source, lengths):
    """source [B, S], lengths [B] -> memory [B, S, H], mask [B, S], decoder start state."""
    packed = nn.utils.rnn.pack_padded_sequence(self.dropout(self.source_embed(source)), lengths,
                                               batch_first=True, enforce_sorted=False)
    outputs, (h, c) = self.encoder(packed)
    memory, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True,
                                                 total_length=source.shape[1])
    state = (torch.cat([h[0], h[1]], -1)[None], torch.cat([c[0], c[1]], -1)[None])
    return self.dropout(memory), source != PAD, state

  def decode(self, tokens, state, memory, mask):
    """tokens [B, T] -> logits [B, T, V], new state."""
    outputs, state = self.decoder(self.dropout(self.target_embed(tokens)), state)
    if self.attention:
      scores = torch.einsum('bth,bsh->bts', self.attention_in(outputs), memory)
      weights = torch.softmax(scores.masked_fill(~mask[:, None], -1e9), -1)
      context = torch.einsum('bts,bsh->bth', weights, memory)
      outputs = torch.tanh(self.attention_out(torch.cat([outputs, context], -1)))
    logits = self.dropout(outputs) @ self.target_embed.weight.T + self.output_bias
    return logits, state


def benchmark_s2s(args):
  splits = {name: read_pairs(os.path.join(args.data, f'{name}-eng-spa.txt'))
            for name in ('train', 'val')}
  train = [(s, t) for s, t in splits['train'] if len(s) < 20 and len(t) < 20]
  source_chars = sorted({c for s, _ in train for c in s})
  target_chars = sorted({c for _, t in train for c in t})
  source_ids = {c: i + 4 for i, c in enumerate(source_chars)}
  target_ids = {c: i + 4 for i, c in enumerate(target_chars)}

  def batch_tensors(pairs):
    sources = [[source_ids.get(c, UNK) for c in s] or [UNK] for s, _ in pairs]
    targets = [[SOS] + [target_ids.get(c, UNK) for c in t] + [EOS] for _, t in pairs]
    source = torch.full((len(pairs), max(map(len, sources))), PAD, dtype=torch.long)
    target = torch.full((len(pairs), max(map(len, targets))), PAD, dtype=torch.long)
    for row, (s, t) in enumerate(zip(sources, targets)):
      source[row, :len(s)], target[row, :len(t)] = torch.tensor(s), torch.tensor(t)
    return source, torch.tensor([len(s) for s in sources]), target

  torch.manual_seed(0)
  model = Seq2Seq(len(source_chars) + 4, len(target_chars) + 4, attention=args.attention)
  optimizer = torch.optim.Adam(model.parameters(), lr=args.lr or 0.003)
  steps = len(train) // args.batch
  for epoch in range(1, args.epochs + 1):
    model.train()
    order = np.random.permutation(len(train))
    start = time.perf_counter()
    total = 0.0
    for step in range(steps):
      source, lengths, target = batch_tensors([train[i] for i in order[step * args.batch:
                                                                        (step + 1) * args.batch]])
      memory, mask, state = model.encode(source, lengths)
      logits, _ = model.decode(target[:, :-1], state, memory, mask)
      loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target[:, 1:].reshape(-1),
                             ignore_index=PAD)
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
      total += loss.item()
    seconds = time.perf_counter() - start

    model.eval()
    decode_start = time.perf_counter()
    with torch.no_grad():
      for sentence, _ in splits['val']:  # One sentence at a time, as the homework decodes.
        source, lengths, _ = batch_tensors([(sentence, '')])
        memory, mask, state = model.encode(source, lengths)
        token = torch.tensor([[SOS]])
        for _ in range(50):
          logits, state = model.decode(token, state, memory, mask)
          token = logits[:, -1:].argmax(-1)
          if token.item() == EOS:
            break
    emit(model='s2s', attention=args.attention, epoch=epoch, batch_size=args.batch,
         seconds=seconds, examples=steps * args.batch,
         examples_per_s=steps * args.batch / seconds, train_loss=total / steps,
         validation_sentences=len(splits['val']),
         greedy_decode_seconds=time.perf_counter() - decode_start)


def emit(**record):
  print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}),
        flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('model', choices=['cnn', 's2s'])
  parser.add_argument('--data', required=True)
  parser.add_argument('--batch', type=int, default=None, help='default: 8 (cnn), 64 (s2s)')
  parser.add_argument('--examples', type=int, default=8000, help='cnn: training images used')
  parser.add_argument('--epochs', type=int, default=3)
  parser.add_argument('--lr', type=float, default=None)
  parser.add_argument('--attention', action='store_true')
  args = parser.parse_args()
  args.batch = args.batch or (8 if args.model == 'cnn' else 64)
  (benchmark_cnn if args.model == 'cnn' else benchmark_s2s)(args)


if __name__ == '__main__':
  main()
