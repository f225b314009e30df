"""The translation task end to end on small files the tests write: learning, decoding, restore,
--mode translate, non-Latin scripts and bad input."""
import glob
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader

from configs import seq2seq
from hw2 import records
from hw2 import train
from hw2 import translate
from hw2 import workdir as workdirs
from hw2.errors import UserError
from hw2.tasks.translation import Translation
from test_cli import assert_one_error_line, run_main


def write_tsv(path, pairs):
  with open(path, 'w', encoding='utf-8') as f:
    f.writelines(f'{s}\t{t}\n' for s, t in pairs)


def make_config(data_dir, **overrides):
  config = seq2seq.get_config()
  config.data_dir = str(data_dir)
  config.train_file, config.validation_file, config.test_file = 'train.tsv', 'val.tsv', 'test.tsv'
  config.source_column, config.target_column = 0, 1
  config.normalize = 'none'
  config.model.hidden_size = 64
  config.batch_size = 32
  config.model.dropout_rate = 0.0
  config.learning_rate = 0.01
  config.eval_batch_size = 256
  config.num_attention_plots = 2
  config.update_from_flattened_dict(overrides)
  return config


def reverse_pairs(rng, n):
  words = [''.join(rng.choice(list('abcdefg'), rng.randint(2, 7))) for _ in range(n)]
  return [(w, w[::-1]) for w in words]


@pytest.fixture(scope='module')
def reverse_run(tmp_path_factory):
  """A small attention model trained to reverse strings of a-g (2-6 characters)."""
  data_dir = tmp_path_factory.mktemp('reverse_data')
  rng = np.random.RandomState(0)
  for name, n in (('train', 2000), ('val', 200), ('test', 200)):
    write_tsv(data_dir / f'{name}.tsv', reverse_pairs(rng, n))
  config = make_config(data_dir, **{'model.use_attention': True, 'num_epochs': 10})
  workdir = str(tmp_path_factory.mktemp('reverse_run'))
  results = train.train_and_evaluate(config, workdir)
  return config, workdir, results


@pytest.mark.slow
def test_learns_to_reverse_strings(reverse_run):
  _, workdir, results = reverse_run
  assert results['test_error_rate'] < 0.05, results
  assert results['test_exact_match'] > 0.8
  # One scan per epoch compiles once; validation and test sources (2-6 characters) pad to 8, and
  # their targets (with SOS and EOS) too.
  assert results['compilations'] == {'train_step': 1, 'decode': 1, 'loss': 1}
  history = records.read_metrics(workdir)
  assert len(history) == 10 and history[-1]['train_loss'] < history[0]['train_loss']
  for name in ('vocab.json', 'test_translations.tsv', 'val_error_rate.png', 'train_loss.png',
               'attention_0.png', 'attention_1.png'):
    assert os.path.exists(os.path.join(workdir, name)), name


def test_each_epoch_records_validation_loss_and_sends_sample_translations(reverse_run):
  config, workdir, _ = reverse_run
  history = records.read_metrics(workdir)
  for record in history:
    assert record['val_perplexity'] == pytest.approx(np.exp(record['val_loss']))
  assert history[-1]['val_loss'] < history[0]['val_loss']
  samples = [value.tensor.string_val[0].decode()
             for path in glob.glob(os.path.join(workdir, 'tensorboard', '*'))
             for event in event_file_loader.LegacyEventFileLoader(path).Load()
             for value in event.summary.value if value.tag == 'samples']
  assert len(samples) == len(history)  # One table per epoch.
  with open(os.path.join(config.data_dir, 'val.tsv'), encoding='utf-8') as f:
    first = [line.rstrip('\n').split('\t') for line in f][:config.num_samples]
  rows = samples[-1].splitlines()[2:]
  assert [row.split(' | ')[:2] for row in rows] == [[f'| {s}', r] for s, r in first]
  # The last epoch's translations of a learned task: mostly the references.
  assert sum(row.split(' | ')[2].rstrip(' |') == r for row, (_, r) in zip(rows, first)) >= 2


def test_chrf_and_bleu_are_sacrebleus_corpus_scores_of_the_test_translations(reverse_run):
  import sacrebleu
  _, workdir, results = reverse_run
  with open(os.path.join(workdir, 'test_translations.tsv'), encoding='utf-8') as f:
    rows = [line.rstrip('\n').split('\t') for line in f][1:]
  references, predictions = [r[1] for r in rows], [r[2] for r in rows]
  assert len(rows) == 200
  assert results['test_bleu'] == pytest.approx(
      sacrebleu.corpus_bleu(predictions, [references]).score, abs=1e-9)
  assert results['test_chrf'] == pytest.approx(
      sacrebleu.corpus_chrf(predictions, [references]).score, abs=1e-9)
  # One-word sentences have no 4-grams, so BLEU is 0 here; chrF reads characters.
  assert 90 < results['test_chrf'] <= 100 and results['test_bleu'] == 0.0


def test_restored_checkpoint_gives_identical_translations(reverse_run):
  config, workdir, results = reverse_run
  lines = open(os.path.join(workdir, 'test_translations.tsv'), encoding='utf-8').read().splitlines()
  sources, predictions = zip(*[(l.split('\t')[0], l.split('\t')[2]) for l in lines[1:]])
  task = Translation(workdirs.config_for_evaluation(workdir, config), workdir, 'eval')
  params, meta = train.restore_best_params(task, task.config, workdir)
  assert meta['epoch'] == results['best_epoch']
  assert [h[0][0] for h in task.translate(params, list(sources))] == list(predictions)
  assert task.evaluate(params, 'test')['error_rate'] == results['test_error_rate']


def test_batched_greedy_decoding_equals_one_sentence_at_a_time(reverse_run):
  config, workdir, _ = reverse_run
  task = Translation(workdirs.config_for_evaluation(workdir, config), workdir, 'translate')
  params, _ = train.restore_best_params(task, task.config, workdir)
  sources = ['ab', 'gfedcb', 'cab', 'a', 'ggggg', 'bcdefga']  # Different lengths share padding.
  together = task.translate(params, sources)
  for source, hypotheses in zip(sources, together):
    assert task.translate(params, [source]) == [hypotheses]


def test_attention_weights_follow_the_reversal(reverse_run):
  config, workdir, _ = reverse_run
  task = Translation(workdirs.config_for_evaluation(workdir, config), workdir, 'translate')
  params, _ = train.restore_best_params(task, task.config, workdir)
  weights = task.attention_weights(params, 'abcdef', 'fedcba')
  assert weights.shape == (7, 6)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
  # Producing output character i, the model looks hardest at source character 5 - i.
  assert np.mean(np.argmax(weights[:6], axis=1) == np.arange(5, -1, -1)) >= 0.5


@pytest.mark.slow
def test_beam_search_in_eval_and_translate(reverse_run, capsys):
  config, workdir, results = reverse_run
  config = config.copy_and_resolve_references()
  config.decode.beam_size, config.decode.n_best = 3, 3
  evaluated = train.evaluate(config, workdir)
  assert evaluated['test_error_rate'] <= results['test_error_rate'] + 0.01
  translate.translate_cli(config, workdir, ['abc', 'gfe'])
  out = capsys.readouterr().out.splitlines()
  assert out[0] == 'abc' and out[1].split()[-1] == 'cba'
  scores = [float(line.split()[0]) for line in out[1:4]]
  assert scores == sorted(scores, reverse=True) and len(out) == 8


def test_decoding_metrics_on_the_validation_split_match_the_training_record(reverse_run):
  # Beam size and length penalty are chosen on the validation split: greedy decoding of the best
  # checkpoint there gives what training recorded for its best epoch.
  _, workdir, results = reverse_run
  best = next(r for r in records.read_metrics(workdir) if r['epoch'] == results['best_epoch'])
  greedy = translate.decoding_metrics(workdir, 1, 0.0, split='validation')
  assert greedy['error_rate'] == pytest.approx(best['val_error_rate'], abs=1e-9)
  assert greedy['chrf'] == pytest.approx(best['val_chrf'], abs=1e-9)
  assert greedy['loss'] == pytest.approx(best['val_loss'], rel=1e-5) != results['test_loss']
  beam = translate.decoding_metrics(workdir, 3, 0.0, split='validation')
  assert beam['error_rate'] <= greedy['error_rate'] + 0.01


@pytest.mark.slow
def test_translate_cli_with_text_and_stdin(reverse_run):
  config, workdir, _ = reverse_run
  result = run_main('--config', 'configs/seq2seq.py', '--workdir', workdir, '--mode', 'translate',
                    '--text', 'abcd', '--text', 'ggab')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ['dcba', 'bagg']
  result = run_main('--config', 'configs/seq2seq.py', '--workdir', workdir, '--mode', 'translate',
                    stdin='fed\n\nxab\n')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.splitlines()[0] == 'def'
  assert 'never seen in training map to UNK: x' in result.stderr
  result = run_main('--config', 'configs/seq2seq.py', '--workdir', workdir, '--mode', 'translate',
                    '--text', 'a' * 300)
  assert_one_error_line(result, 'has 300 characters', 'at most 200',
                        '--config.decode.max_source_length')


@pytest.mark.slow
def test_non_latin_script_trains_with_normalize_none(tmp_path):
  pairs = [('привет мир', 'مرحبا بالعالم'), ('кот', 'قطة'), ('дом', 'منزل'), ('вода', 'ماء')] * 8
  for name in ('train', 'val', 'test'):
    write_tsv(tmp_path / f'{name}.tsv', pairs)
  workdir = str(tmp_path / 'run')
  config = make_config(tmp_path, **{'num_epochs': 1, 'model.hidden_size': 16})
  results = train.train_and_evaluate(config, workdir)
  assert 0.0 <= results['test_error_rate']
  vocab = records.read_json(os.path.join(workdir, 'vocab.json'))
  assert 'п' in vocab['source'] and 'ب' in vocab['target']
  assert np.isfinite(records.read_metrics(workdir)[0]['train_loss'])


def test_bad_translation_inputs(tmp_path):
  write_tsv(tmp_path / 'train.tsv', [('ab', 'ba')])
  (tmp_path / 'val.tsv').write_text('ab\tba\nno tab here\n', encoding='utf-8')
  (tmp_path / 'test.tsv').write_text('', encoding='utf-8')
  config = make_config(tmp_path, num_epochs=1)
  with pytest.raises(UserError, match=r'val.tsv:2: line has no tab'):
    Translation(config, str(tmp_path / 'w'), 'train')
  assert not (tmp_path / 'w').exists()  # Nothing written for a bad data folder.
  write_tsv(tmp_path / 'val.tsv', [('ab', 'ba')])
  with pytest.raises(UserError, match='test.tsv holds no sentence pairs'):
    Translation(config, str(tmp_path / 'w'), 'train')
  config.train_file = 'missing.tsv'
  with pytest.raises(UserError, match='data file not found: .*missing.tsv'):
    Translation(config, str(tmp_path / 'w'), 'train')
  write_tsv(tmp_path / 'cyrillic.tsv', [('кот', 'дом')])
  config.train_file, config.normalize = 'cyrillic.tsv', 'homework'
  with pytest.raises(UserError, match='vocabulary would be empty'):
    Translation(config, str(tmp_path / 'w'), 'train')
  with pytest.raises(UserError, match='no trained run in --workdir'):
    translate.translate_cli(config, str(tmp_path / 'nothing'), ['hola'])


def test_translate_without_vocabulary_is_a_clear_error(reverse_run, tmp_path):
  config, workdir, _ = reverse_run
  os.makedirs(tmp_path / 'w')
  workdirs.write_config(str(tmp_path / 'w'), config)
  with pytest.raises(UserError, match='no vocabulary file .*vocab.json'):
    translate.translate_cli(config, str(tmp_path / 'w'), ['abc'])


class Stop(Exception):
  pass


@pytest.mark.slow
def test_grid_sweep_over_seeds_gives_mean_and_std_and_resumes(tmp_path, monkeypatch):
  from hw2 import sweeps  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(1)
  for name, n in (('train', 300), ('val', 50), ('test', 50)):
    write_tsv(tmp_path / f'{name}.tsv', reverse_pairs(rng, n))
  config = make_config(tmp_path, **{'num_epochs': 2, 'model.hidden_size': 16,
                                    'model.use_attention': True, 'num_attention_plots': 0})
  workdir = str(tmp_path / 'grid')
  specs = ['learning_rate=1e-3,3e-3', 'seed=1,2']
  members = ['learning_rate=1e-3,seed=1', 'learning_rate=1e-3,seed=2',
             'learning_rate=3e-3,seed=1', 'learning_rate=3e-3,seed=2']
  real_train, finished = train.train_and_evaluate, []

  def killed_after_two(run_config, run_dir):
    results = real_train(run_config, run_dir)
    finished.append(os.path.basename(run_dir))
    if len(finished) == 2:
      raise Stop
    return results
  monkeypatch.setattr(train, 'train_and_evaluate', killed_after_two)
  with pytest.raises(Stop):
    sweeps.run_sweep(config, workdir, specs)
  monkeypatch.undo()
  assert finished == members[:2]
  stamps = {m: os.stat(os.path.join(workdir, m, 'metrics.jsonl')).st_mtime_ns for m in members[:2]}
  rows = sweeps.run_sweep(config, workdir, specs)
  for member in members[:2]:  # Not retrained: their records were not rewritten.
    assert os.stat(os.path.join(workdir, member, 'metrics.jsonl')).st_mtime_ns == stamps[member]
  assert [r['value'] for r in rows] == members
  for row, member in zip(rows, members):
    assert records.read_json(os.path.join(workdir, member, 'config.json'))['seed'] == int(
        member[-1])
  summary = records.read_json(os.path.join(workdir, 'sweep.json'))
  groups = summary['seed_groups']
  assert [g['setting'] for g in groups] == ['learning_rate=1e-3', 'learning_rate=3e-3']
  for group, runs in zip(groups, (rows[:2], rows[2:])):
    errors = [r['test_error_rate'] for r in runs]
    assert group['test_error_rate']['mean'] == pytest.approx(np.mean(errors))
    assert group['test_error_rate']['std'] == pytest.approx(np.std(errors, ddof=1))
    assert group['seeds'] == ['1', '2']
  best = min(groups, key=lambda g: g['best_val']['mean'])
  assert [g['is_best'] for g in groups] == [g is best for g in groups]
  table = open(os.path.join(workdir, 'sweep.md'), encoding='utf-8').read()
  assert 'Mean +- sample standard deviation over the seeds' in table
  assert f"| learning_rate=1e-3 | 1,2 | {groups[0]['best_val']['mean']:.4f} +- " in table
