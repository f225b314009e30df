"""Accuracy, Levenshtein distance and the homework's error rate on hand-computed cases."""
import pytest

from hw2 import metrics


@pytest.mark.parametrize('a, b, distance', [
    ('', '', 0), ('abc', 'abc', 0), ('abc', '', 3), ('', 'ab', 2),
    ('kitten', 'sitting', 3),  # 2 substitutions + 1 insertion
    ('flaw', 'lawn', 2), ('i came .', 'i come .', 1), ('ab', 'ba', 2),
])
def test_levenshtein(a, b, distance):
  assert metrics.levenshtein(a, b) == distance
  assert metrics.levenshtein(b, a) == distance


def test_error_rate_hand_computed_cases():
  assert metrics.error_rate(['this is dill .'], ['this is dill .']) == 0.0
  assert metrics.error_rate(['this is dill .'], ['']) == 1.0  # Empty prediction.
  # Insertions count, so the rate can exceed 1: 'ab' -> 'abxyz' is 3 insertions over 2 chars.
  assert metrics.error_rate(['ab'], ['abxyz']) == pytest.approx(1.5)
  # Spaces are characters: 'a b' vs 'ab' is one deletion over 3 characters.
  assert metrics.error_rate(['a b'], ['ab']) == pytest.approx(1 / 3)
  # The mean over sentences, not over characters.
  assert metrics.error_rate(['abcd', 'xy'], ['abcd', 'x']) == pytest.approx((0 + 0.5) / 2)


def test_exact_match_and_accuracy():
  assert metrics.exact_match(['a', 'b', 'c', 'd'], ['a', 'x', 'c', 'd ']) == 0.5
  assert metrics.accuracy([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5


def test_error_rate_needs_matching_lengths():
  with pytest.raises(ValueError, match='2 references but 1 predictions'):
    metrics.error_rate(['a', 'b'], ['a'])
