"""Bad values and bad files: one `error:` line from the CLI, exit 1, the workdir left as it was;
and a property test that validation accepts a value or raises UserError, never anything else."""
import math
import os
import subprocess
import sys

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from configs import cnn, homework, seq2seq, seq2seq_attention, theory
from conftest import ROOT, SPA_ENG_DIR
from hw2 import tasks
from hw2 import validation
from hw2.errors import UserError
from test_cli import assert_one_error_line, run_main


def snapshot(folder):
  """{relative path: bytes} of every file under `folder` ({} if it does not exist)."""
  files = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        files[os.path.relpath(path, folder)] = f.read()
  return files


@pytest.fixture
def translation_files(tmp_path):
  """A copy of the homework's translation data whose training file is Latin-1, not UTF-8."""
  folder = tmp_path / 'latin1'
  folder.mkdir()
  for name in ('val-eng-spa.txt', 'test-eng-spa.txt'):
    (folder / name).write_bytes(open(os.path.join(SPA_ENG_DIR, name), 'rb').read())
  (folder / 'train-eng-spa.txt').write_bytes(
      'hello .\thola .\t42\nmy father .\tmi padre .\t42\nthe boy .\tel ni\u00f1o .\t42\n'
      .encode('latin-1'))
  return str(folder)


CNN, S2S = 'configs/cnn.py', 'configs/seq2seq.py'


@pytest.mark.parametrize('config_file, args, fragments', [
    (CNN, ['--config.batch_size=0'], ['--config.batch_size=0', 'integer in [1, ']),
    (CNN, ['--config.batch_size=-8'], ['--config.batch_size=-8', 'integer in [1, ']),
    (CNN, ['--config.num_epochs=0'], ['--config.num_epochs=0', 'integer in [1, ']),
    (CNN, ['--config.model.dropout_rate=1.5'], ['--config.model.dropout_rate=1.5', 'in [0, 1)']),
    (CNN, ['--config.model.dropout_rate=nan'], ['--config.model.dropout_rate=nan', 'finite number']),
    (CNN, ['--config.learning_rate=inf'], ['--config.learning_rate=inf', 'finite number in (0, inf)']),
    (CNN, ['--config.max_train_examples=-5'], ['--config.max_train_examples=-5', 'in [0, ']),
    (CNN, ['--config.optimizer=adamw'], ["unknown optimizer 'adamw'", "'adam'"]),
    (S2S, ['--config.model.hidden_size=127'], ['--config.model.hidden_size=127', 'even integer']),
    (S2S, ['--config.decode.beam_size=0'], ['--config.decode.beam_size=0', 'integer in [1, ']),
    (S2S, ['--config.decode.n_best=3'], ['--config.decode.n_best=3', 'beam_size=1']),
    (CNN, ['--config.schedule=exponential'], ["unknown schedule 'exponential'", "'cosine'"]),
    (CNN, ['--config.weight_decay=-0.1'], ['--config.weight_decay=-0.1', 'in [0, inf)']),
    (S2S, ['--config.ema_decay=1.0'], ['--config.ema_decay=1.0', 'in [0, 1)']),
    (S2S, ['--config.early_stopping_patience=-1'],
     ['--config.early_stopping_patience=-1', 'integer in [0, ']),
    (CNN, ['--config.plateau_patience=0'], ['--config.plateau_patience=0', 'integer in [1, ']),
    (CNN, ['--config.label_smoothing=1'], ['--config.label_smoothing=1', 'in [0, 1)']),
    (S2S, ['--config.grad_clip_norm=-1.0'], ['--config.grad_clip_norm=-1.0', 'in [0, inf)']),
    (CNN, ['--config.warmup_steps=-3'], ['--config.warmup_steps=-3', 'integer in [0, ']),
    (CNN, ['--sweep', 'seed=1,2', '--sweep', 'seed=3'], ['--sweep names seed twice']),
    ('configs/transformer.py', ['--config.model.impl=fast'],
     ['transformer translator has one implementation']),
    (S2S, ['--config.model.impl=fast'], ['lstm translator has one implementation']),
    ('configs/transformer.py', ['--config.model.num_heads=3'],
     ['--config.model.hidden_size=80 does not divide into --config.model.num_heads=3 heads']),
    (S2S, ['--config.model.architecture=transformer'], ['--config.model lacks num_layers']),
    ('configs/beyond.py', ["--config.ablation=('nope',)"], ["names 'nope', which is not a field"]),
    (CNN, ['--config.learnin_rate=1'],
     ["unknown config key 'learnin_rate' (did you mean 'learning_rate'?)"]),
    ('configs/nope.py', [], ['config file configs/nope.py does not exist']),
])
def test_bad_value_gives_one_error_line_and_leaves_the_workdir_alone(tmp_path, config_file, args,
                                                                     fragments):
  workdir = tmp_path / 'w'
  result = run_main('--config', config_file, '--workdir', str(workdir), *args)
  assert_one_error_line(result, *fragments)
  assert not workdir.exists()


def test_config_file_without_get_config(tmp_path):
  path = tmp_path / 'broken.py'
  path.write_text('learning_rate = 1\n')
  result = run_main('--config', str(path), '--workdir', str(tmp_path / 'w'))
  assert_one_error_line(result, f'config file {path} does not define get_config()')


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / 'a_file'
  path.write_text('keep me\n')
  result = run_main('--config', CNN, '--workdir', str(path))
  assert_one_error_line(result, f'--workdir={path} is a file, not a folder')
  assert path.read_text() == 'keep me\n'


def test_existing_workdir_is_left_as_it_was(tmp_path):
  workdir = tmp_path / 'w'
  workdir.mkdir()
  (workdir / 'notes.txt').write_text('mine\n')
  result = run_main('--config', CNN, '--workdir', str(workdir), '--config.batch_size=0')
  assert_one_error_line(result, '--config.batch_size=0')
  assert snapshot(workdir) == {'notes.txt': b'mine\n'}


def test_translation_file_that_is_not_utf8(tmp_path, translation_files):
  workdir = tmp_path / 'w'
  result = run_main('--config', S2S, '--workdir', str(workdir),
                    f'--config.data_dir={translation_files}')
  assert_one_error_line(result, 'train-eng-spa.txt:3: not UTF-8 text', 'byte 0xf1')
  assert not workdir.exists()


@pytest.mark.parametrize('make, fragment', [
    (lambda d: os.mkdir(os.path.join(d, 'train-eng-spa.txt')), 'is a folder, not a file'),
    (lambda d: open(os.path.join(d, 'train-eng-spa.txt'), 'w').close(), 'holds no sentence pairs'),
])
def test_data_file_that_is_a_folder_or_empty(tmp_path, translation_files, make, fragment):
  os.remove(os.path.join(translation_files, 'train-eng-spa.txt'))
  make(translation_files)
  config = seq2seq.get_config()
  config.data_dir = translation_files
  with pytest.raises(UserError, match=fragment):
    tasks.build(config, str(tmp_path / 'w'), 'train')


def test_choices_match_the_registries():
  from hw2 import models, optim
  from hw2.data import images, text
  assert set(validation.CHOICES['dataset']) == set(images.DATASETS)
  assert set(validation.CHOICES['normalize']) == set(text.NORMALIZERS)
  assert set(validation.CHOICES['task']) == set(tasks.TASKS) | {'theory', 'homework', 'beyond'}
  assert set(validation.CHOICES['optimizer']) == set(optim.OPTIMIZERS)
  assert set(validation.CHOICES['schedule']) == set(optim.SCHEDULES)
  assert set(validation.CHOICES['model.impl']) == set(models.IMPLS)
  assert set(validation.CHOICES['model.architecture']) == set(models.ARCHITECTURES)


def test_a_config_error_is_reported_before_jax_is_imported(tmp_path):
  """Flag parsing and validation import neither JAX, Flax nor optax, so a mistyped value answers
  at once (main.py's error path, in a fresh interpreter)."""
  program = (
      'import sys\n'
      'from absl import app\n'
      'import main\n'
      'from hw2 import cli\n'
      f'sys.argv = ["main.py", "--config", "configs/cnn.py", "--workdir", {str(tmp_path / "w")!r},'
      ' "--config.learning_rate=-1"]\n'
      'try:\n'
      '  app.run(main.main, flags_parser=cli.parse_flags)\n'
      'finally:\n'
      '  print(sorted(m for m in ("jax", "flax", "optax", "orbax") if m in sys.modules))\n')
  done = subprocess.run([sys.executable, '-c', program], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines() == [
      "error: --config.learning_rate=-1.0 is out of range: it must be a number in (0, inf)"]
  assert done.stdout.strip() == '[]'
  assert not (tmp_path / 'w').exists()


# --- Property: validation accepts a value or raises UserError, and what it accepts builds. ------

CONFIGS = {'cnn': cnn.get_config, 'seq2seq': seq2seq.get_config,
           'seq2seq_attention': seq2seq_attention.get_config, 'theory': theory.get_config,
           'homework': homework.get_config}


def numeric_fields(config, prefix=''):
  """Dotted names and types of the int and float fields of a config, nested ones included."""
  fields = []
  for name, value in config.items():
    if hasattr(value, 'items'):
      fields += numeric_fields(value, f'{prefix}{name}.')
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      fields.append((prefix + name, type(value)))
  return fields


FIELDS = [(name, field, kind) for name, make in CONFIGS.items()
          for field, kind in numeric_fields(make())]
WIDE_INTS = st.one_of(st.integers(-3, 3), st.integers(-2**64, 2**64),
                      st.sampled_from([2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63]))
WIDE_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                        st.sampled_from([0.0, -0.0, 1.0, 0.999999, 1e-300, 1e300, -1e-9,
                                         math.nan, math.inf, -math.inf]))


DATA_DEPENDENT = ('validation_size', 'split_test_images', 'max_length', 'source_column',
                  'target_column', 'decode.max_source_length')


def set_field(config, dotted, value):
  *parents, leaf = dotted.split('.')
  node = config
  for name in parents:
    node = node[name]
  node[leaf] = value


@pytest.fixture(scope='module')
def build_dirs(tmp_path_factory, small_image_dir):
  """Small data for building the tasks quickly: the KMNIST IDX folder and 60 homework pairs."""
  text_dir = tmp_path_factory.mktemp('pairs')
  for name in ('train-eng-spa.txt', 'val-eng-spa.txt', 'test-eng-spa.txt'):
    with open(os.path.join(SPA_ENG_DIR, name), encoding='utf-8') as f:
      (text_dir / name).write_text(''.join(f.readlines()[:60]), encoding='utf-8')
  return {'cnn_data': small_image_dir, 'text_data': str(text_dir),
          'workdir': str(tmp_path_factory.mktemp('property'))}


@pytest.mark.parametrize('name, field, kind', FIELDS, ids=[f'{n}:{f}' for n, f, _ in FIELDS])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_numeric_override_is_accepted_or_a_user_error(name, field, kind, data, build_dirs):
  config = CONFIGS[name]()
  if name == 'cnn':
    config.data_dir, config.validation_size = build_dirs['cnn_data'], 200
  elif name not in ('theory', 'homework'):
    config.data_dir = build_dirs['text_data']
  value = data.draw(WIDE_INTS if kind is int else WIDE_FLOATS)
  set_field(config, field, value)
  try:
    validation.validate(config)
  except UserError as e:
    assert f'--config.{field}=' in str(e) or field.split('.')[-1] in str(e), str(e)
    return
  if name in ('theory', 'homework'):
    return  # Nothing to build: theory reads only its case lists; homework's parts are above.
  # Accepted: the task builds (data read, model and jitted functions made). Only what depends on
  # the data (the size of a split, a column the file lacks, a length limit no pair meets) may
  # still be refused there, and then as a UserError.
  try:
    tasks.build(config, build_dirs['workdir'], 'train')
  except UserError as e:
    assert field in DATA_DEPENDENT, (field, value, e)
