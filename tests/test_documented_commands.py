"""Every `main.py` command that a document shows, and every `--config.*` fragment that a document
or an error message advises, is accepted by the code as printed.

Sources: README.md, BUILD.md, data/README.md, docs/**/*.md (code blocks and inline code), the
docstrings of main.py and configs/*.py (continuation lines joined), and the offline advice of
the image loader's download error. Each command goes through main.py's own flag parsing (a fresh
FlagValues), `validation.validate`, the --sweep parser, and the data-size checks of the data
shipped in data/, without training. Paths outside the repository are checked for form only.
"""
import contextlib
import glob
import io
import json
import os
import re
import shlex

from absl import flags
import ml_collections
import pytest

from conftest import ROOT
import main
from hw2 import cli
from hw2 import parallel
from hw2 import sweeps
from hw2 import tasks
from hw2 import validation
from hw2.data import images
from hw2.errors import UserError

DOCUMENTS = ['README.md', 'BUILD.md', os.path.join('data', 'README.md'),
             *sorted(os.path.relpath(p, ROOT)
                     for p in glob.glob(os.path.join(ROOT, 'docs', '**', '*.md'),
                                        recursive=True))]
DOCSTRINGS = ['main.py', *sorted(os.path.relpath(p, ROOT)
                                 for p in glob.glob(os.path.join(ROOT, 'configs', '*.py')))]
CONFIG_FILES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                      if 'def get_config' in open(p, encoding='utf-8').read())
SHELL_ENDS = {'|', '||', '&&', ';', '>', '>>', '2>', '2>&1', '&'}
# A --config flag with a value; one whose value is a placeholder (DIR, VALUE) shows the syntax.
FRAGMENT = re.compile(r"""--config\.[a-z_][a-z0-9_.]*=(?![A-Z_]+\b)"""
                      r"""(?:'[^']*'|"[^"]*"|[^\s`'"]+)""")
SHIPPED_DATA = os.path.join(ROOT, 'data')


def _logical_lines(text):
  """(line number, text) with backslash continuations joined onto their first line."""
  lines, number, pending = [], None, ''
  for i, line in enumerate(text.splitlines(), 1):
    if not pending:
      number = i
    if line.rstrip().endswith('\\'):
      pending += line.rstrip()[:-1] + ' '
      continue
    lines.append((number, pending + line))
    pending = ''
  return lines


def _markdown_snippets(text):
  """(line, code) of each line of a fenced code block and of each inline code span (which may
  run over a line break)."""
  snippets, fenced, prose = [], False, []
  for number, line in _logical_lines(text):
    if line.lstrip().startswith('```'):
      fenced = not fenced
    elif fenced:
      snippets.append((number, line))
    else:
      prose.append((number, line))
  starts, joined = [], ''
  for number, line in prose:
    starts.append((len(joined), number))
    joined += line + '\n'
  for match in re.finditer(r'`([^`]+)`', joined):
    number = max(n for offset, n in starts if offset <= match.start())
    snippets.append((number, ' '.join(match.group(1).split())))
  return sorted(snippets)


def _docstring_snippets(path):
  """(line, text) of the lines of the module docstring of the Python file `path`."""
  with open(path, encoding='utf-8') as f:
    source = f.read()
  match = re.match(r'\s*(?:[rR])?"""(.*?)"""', source, re.S)
  return _logical_lines(match.group(1)) if match else []


def _snippets():
  for name in DOCUMENTS:
    with open(os.path.join(ROOT, name), encoding='utf-8') as f:
      for number, code in _markdown_snippets(f.read()):
        yield name, number, code
  for name in DOCSTRINGS:
    for number, code in _docstring_snippets(os.path.join(ROOT, name)):
      yield name, number, code


def _command_args(code):
  """The arguments after `main.py` in a shell snippet, up to its first shell operator."""
  words = shlex.split(code[code.index('main.py') + len('main.py'):], comments=True)
  for i, word in enumerate(words):
    if word in SHELL_ENDS:
      return words[:i]
  return words


def collect():
  """(where, kind, payload): kind 'command' with main.py's arguments, or 'fragment' with the
  --config flags a snippet advises on their own."""
  found = []
  for name, number, code in _snippets():
    where = f'{name}:{number}'
    if re.search(r'(^|[\s/])main\.py\s+--', code):
      found.append((where, 'command', _command_args(code)))
    elif FRAGMENT.search(code):
      config = name if name in CONFIG_FILES else None
      found.append((where, 'fragment', (config, [shlex.split(f)[0]
                                                 for f in FRAGMENT.findall(code)])))
  return found


COLLECTED = collect()


def parse(args):
  """main.py's flag parsing of `args`: (FlagValues, one-line error or None)."""
  argv = ['main.py', *args]
  flag_values = flags.FlagValues()
  main.define_flags(flag_values, argv)
  stderr = io.StringIO()
  try:
    with contextlib.redirect_stderr(stderr):
      cli.parse_flags(argv, flag_values)
  except SystemExit:
    return flag_values, stderr.getvalue().strip()
  return flag_values, None


def _inside_repository(path):
  return os.path.abspath(path).startswith(ROOT + os.sep)


_TRAINING_EXAMPLES = {}  # Config (JSON) -> its number of training examples.


def check_data(config, tmp_path):
  """The data-size checks of a config whose data ships in data/ (others: form only)."""
  if config.task in validation.PART_TASKS:
    for part in validation.PART_TASKS[config.task]:
      check_data(config[part], tmp_path)
    return
  if config.task not in tasks.TASKS or not config.get('data_dir'):
    return
  if not os.path.abspath(config.data_dir).startswith(SHIPPED_DATA + os.sep):
    return  # A user's own folder, or TFDS: checked for form only.
  key = json.dumps(config.to_dict(), sort_keys=True, default=str)
  if key not in _TRAINING_EXAMPLES:  # Commands that differ in workdir or mode read it once.
    task = tasks.build(config, str(tmp_path / 'w'), 'train')
    _TRAINING_EXAMPLES[key] = len(next(iter(task.train_arrays().values())))
  examples = _TRAINING_EXAMPLES[key]
  if examples < config.batch_size:
    raise UserError(f'--config.batch_size={config.batch_size} exceeds the {examples} training '
                    'examples')
  parallel.check_batch_sizes(config)


def check_command(args, tmp_path):
  """Raises AssertionError (with the error line) unless main.py would accept `args`."""
  flag_values, error = parse(args)
  assert error is None, error
  config = flag_values.config
  try:
    validation.validate(config)
    if flag_values.sweep:
      for key, values in sweeps.parse_sweeps(flag_values.sweep, config):
        for _, value in values:
          member = config.copy_and_resolve_references()
          member.update_from_flattened_dict({key: value})
          validation.validate(member)
    if flag_values.coordinator_address is not None:
      parallel.check_address(flag_values.coordinator_address)
    if flag_values.mode == 'train':
      check_data(config, tmp_path)
  except UserError as e:
    raise AssertionError(f'error: {e}') from None


def _base_commands(config_file):
  """main.py arguments that a fragment is applied to: its config file's, else every config's."""
  return [['--config', f, '--workdir', 'runs/x'] for f in ([config_file] if config_file
                                                           else CONFIG_FILES)]


@pytest.mark.parametrize('where,kind,payload', COLLECTED, ids=[w for w, _, _ in COLLECTED])
def test_documented_command_is_accepted(where, kind, payload, tmp_path, monkeypatch):
  monkeypatch.chdir(ROOT)
  if kind == 'command':
    check_command(payload, tmp_path)
    return
  config_file, fragments = payload
  accepted = 0
  for base in _base_commands(config_file):
    _, error = parse([*base, *fragments])
    if error and 'unknown config key' in error:
      continue  # A fragment for another experiment's config.
    check_command([*base, *fragments], tmp_path)
    accepted += 1
  assert accepted, f'{where}: no config takes {" ".join(fragments)}'


def test_every_document_was_read():
  """The collector finds the commands of each kind of source (a test that cannot pass vacuously)."""
  sources = {where.split(':')[0] for where, _, _ in COLLECTED}
  assert {'README.md', 'BUILD.md', 'main.py', os.path.join('configs', 'cnn.py')} <= sources
  assert sum(kind == 'command' for _, kind, _ in COLLECTED) >= 20


def test_the_offline_advice_of_the_download_error_runs(tmp_path, monkeypatch):
  """The advice printed when TFDS cannot download, added to README's CNN command as printed."""
  monkeypatch.chdir(ROOT)
  advice = str(images._download_failure('kmnist', OSError('no network')))  # pylint: disable=protected-access
  fragments = [shlex.split(f)[0] for f in FRAGMENT.findall(advice)]
  assert any(f.startswith('--config.data_dir=data/') for f in fragments)
  readme = [args for where, kind, args in COLLECTED
            if where.startswith('README.md:') and kind == 'command'
            and args[:2] == ['--config', 'configs/cnn.py'] and '--mode' not in args
            and not any(a.startswith('--config.') or a == '--sweep' for a in args)]
  assert readme, 'README.md shows no plain CNN training command'
  check_command([*readme[0], *fragments], tmp_path)


def test_a_renamed_flag_is_caught(tmp_path, monkeypatch):
  """The checks reject what the code would: a key that does not exist, and the shipped KMNIST
  images without a validation size that fits them."""
  monkeypatch.chdir(ROOT)
  with pytest.raises(AssertionError, match="unknown config key 'use_attention'"):
    check_command(['--config', 'configs/seq2seq.py', '--workdir', 'runs/x',
                   '--config.use_attention=True'], tmp_path)
  with pytest.raises(AssertionError, match='validation_size=10000 must lie in'):
    check_command(['--config', 'configs/cnn.py', '--workdir', 'runs/x',
                   '--config.data_dir=data/kmnist', '--config.split_test_images=2000'], tmp_path)


def test_commands_of_a_markdown_text_are_found():
  text = ('Run `python main.py --config configs/cnn.py --workdir runs/a` or\n\n```\n'
          'python main.py --config configs/seq2seq.py --workdir runs/b \\\n'
          '    --config.model.use_attention=True | tee log\n```\n'
          'and add `--config.seed=3`.\n')
  snippets = _markdown_snippets(text)
  assert [n for n, _ in snippets] == [1, 4, 7]
  assert _command_args(snippets[1][1]) == ['--config', 'configs/seq2seq.py', '--workdir',
                                           'runs/b', '--config.model.use_attention=True']
  assert FRAGMENT.findall(snippets[2][1]) == ['--config.seed=3']
  assert isinstance(parse(['--config', 'configs/cnn.py', '--workdir', 'w'])[0].config,
                    ml_collections.ConfigDict)
