"""First-sub-word labels, sliding windows that drop no word, and the way back to word labels."""

import random

import pytest

from fairseq_xlmr.data.label_alignment import (
    IGNORE_INDEX,
    collect_word_predictions,
    first_subword_labels,
    plan_windows,
    windowed_examples,
)

BOS, EOS = 0, 2
X = IGNORE_INDEX


def test_label_on_first_subword_only():
    tokens, labels = first_subword_labels([[10], [11, 12, 13], [14, 15]], [5, 6, 7])
    assert tokens == [10, 11, 12, 13, 14, 15]
    assert labels == [5, 6, X, X, 7, X]
    with pytest.raises(ValueError, match="no piece"):
        first_subword_labels([[10], []], [1, 2])


def test_short_sentence_is_one_window_with_specials():
    [example] = windowed_examples([[10], [11, 12]], [5, 6], max_tokens=8, stride=2, bos=BOS, eos=EOS)
    assert example.tokens == [BOS, 10, 11, 12, EOS]
    assert example.labels == [X, 5, 6, X, X]
    assert example.word_index == [-1, 0, 1, -1, -1]


def test_windows_overlap_and_each_word_is_owned_where_it_has_most_context():
    windows = plan_windows([1] * 10, max_tokens=6, stride=2)
    assert [(w.first_word, w.end_word) for w in windows] == [(0, 6), (2, 8), (4, 10)]
    assert [w.owned for w in windows] == [(0, 1, 2, 3), (4, 5), (6, 7, 8, 9)]


def test_long_word_is_capped_but_keeps_its_first_piece():
    examples = windowed_examples([[10], list(range(20, 40)), [11]], [1, 2, 3], max_tokens=6, stride=2, bos=BOS, eos=EOS)
    assert all(len(e.tokens) <= 6 for e in examples)
    scored = {w: e.tokens[i] for e in examples for i, w in enumerate(e.word_index) if w >= 0}
    assert scored == {0: 10, 1: 20, 2: 11}


@pytest.mark.parametrize("seed", range(20))
def test_every_word_of_a_sentence_longer_than_the_window_gets_exactly_one_prediction(seed):
    rng = random.Random(seed)
    num_words = rng.randint(30, 120)
    word_pieces = [[100 + rng.randrange(50) for _ in range(rng.randint(1, 4))] for _ in range(num_words)]
    labels = [rng.randrange(5) for _ in range(num_words)]
    max_tokens, stride = rng.randint(8, 24), rng.randint(1, 6)
    examples = windowed_examples(word_pieces, labels, max_tokens, stride, BOS, EOS)
    assert len(examples) > 1 and all(len(e.tokens) <= max_tokens for e in examples)
    for e in examples:  # a window's targets sit exactly where it scores a word
        assert [t != X for t in e.labels] == [w >= 0 for w in e.word_index]
        assert e.tokens[0] == BOS and e.tokens[-1] == EOS
    # Predict "the label" at scored positions and garbage elsewhere; the inverse mapping must
    # return each word's label exactly once, in order.
    predictions = [[t if t != X else 99 for t in e.labels] for e in examples]
    words = collect_word_predictions([e.word_index for e in examples], predictions, [0] * len(examples), [num_words])
    assert words == [labels]


def test_collect_word_predictions_over_a_batch_and_detects_a_missing_word():
    word_index = [[-1, 0, 1, -1], [-1, 0, -1, -1], [-1, 1, 2, -1]]
    predictions = [[9, 4, 5, 9], [9, 7, 9, 9], [9, 8, 6, 9]]
    assert collect_word_predictions(word_index, predictions, [0, 1, 1], [2, 3]) == [[4, 5], [7, 8, 6]]
    with pytest.raises(ValueError, match="expected exactly one"):
        collect_word_predictions(word_index, predictions, [0, 1, 1], [2, 4])
