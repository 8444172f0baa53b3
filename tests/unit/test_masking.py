"""Dynamic 80/10/10 masking (BERT/RoBERTa, as used by XLM-R): statistics, specials, whole words."""

import numpy as np
import pytest
import torch
from fairseq.data import ListDataset

from fairseq_xlmr.data.masking import (
    XlmrMaskTokensDataset,
    mask_tokens,
    random_candidates,
    special_ids,
    word_start_table,
)
from tests.fixtures.tiny_bin import tiny_dictionary


@pytest.fixture(scope="module")
def vocab():
    dictionary = tiny_dictionary(60)
    dictionary.pad_to_multiple_(8)  # adds madeupword fillers, which must never be drawn
    mask_idx = dictionary.add_symbol("<mask>")
    return dictionary, mask_idx


def _sentences(dictionary, rng, n_sentences, length=20):
    """<s> w w ... </s> repeated: (n_sentences * (length + 2),) ids, pieces from the word list."""
    ordinary = [dictionary.index(s) for s in dictionary.symbols if s.lstrip("\u2581").startswith("p")]
    rows = [[dictionary.bos()] + rng.choice(ordinary, length).tolist() + [dictionary.eos()] for _ in range(n_sentences)]
    return np.array(sum(rows, []), dtype=np.int64)


def _mask(vocab, tokens, seed=0, whole_words=False, **probs):
    dictionary, mask_idx = vocab
    settings = dict(mask_prob=0.15, leave_unmasked_prob=0.1, random_token_prob=0.1)
    settings.update(probs)
    return mask_tokens(
        tokens, np.random.default_rng(seed), special_ids=special_ids(dictionary, mask_idx), mask_idx=mask_idx,
        random_candidates=random_candidates(dictionary, mask_idx), pad_idx=dictionary.pad(),
        word_starts=word_start_table(dictionary) if whole_words else None, **settings,
    )


def test_special_and_candidate_ids_come_from_the_dictionary(vocab):
    dictionary, mask_idx = vocab
    specials = set(special_ids(dictionary, mask_idx).tolist())
    assert specials == {dictionary.bos(), dictionary.pad(), dictionary.eos(), dictionary.unk(), mask_idx}
    candidates = [dictionary[i] for i in random_candidates(dictionary, mask_idx)]
    assert len(candidates) == 60 and all(s.lstrip("\u2581").startswith("p") for s in candidates)


def test_fifteen_percent_chosen_then_80_10_10(vocab):
    dictionary, mask_idx = vocab
    tokens = _sentences(dictionary, np.random.default_rng(0), 5000)  # 100k ordinary tokens
    masked, target = _mask(vocab, tokens)
    chosen = target != dictionary.pad()
    ordinary = ~np.isin(tokens, special_ids(dictionary, mask_idx))
    assert chosen.sum() / ordinary.sum() == pytest.approx(0.15, abs=0.004)
    assert np.array_equal(target[chosen], tokens[chosen])
    as_mask = (masked[chosen] == mask_idx).mean()
    unchanged = (masked[chosen] == tokens[chosen]).mean()  # includes random draws of the same piece (1/60)
    replaced = 1 - as_mask - unchanged
    assert as_mask == pytest.approx(0.8, abs=0.015)
    assert replaced == pytest.approx(0.1 * 59 / 60, abs=0.01)
    assert unchanged == pytest.approx(0.1 + 0.1 / 60, abs=0.01)
    assert np.array_equal(masked[~chosen], tokens[~chosen])  # nothing else is touched


def test_specials_are_never_chosen_and_replacements_never_special(vocab):
    dictionary, mask_idx = vocab
    tokens = _sentences(dictionary, np.random.default_rng(1), 2000)
    tokens[5::7] = dictionary.unk()
    masked, target = _mask(vocab, tokens, mask_prob=0.5, leave_unmasked_prob=0.0, random_token_prob=1.0)
    specials = np.isin(tokens, special_ids(dictionary, mask_idx))
    assert (target[specials] == dictionary.pad()).all() and np.array_equal(masked[specials], tokens[specials])
    replaced = masked[target != dictionary.pad()]
    assert np.isin(replaced, random_candidates(dictionary, mask_idx)).all()
    assert not any(dictionary[i].startswith("madeupword") or i == mask_idx for i in replaced)


def test_whole_word_masking_masks_complete_words(vocab):
    dictionary, _ = vocab
    tokens = _sentences(dictionary, np.random.default_rng(2), 1000)
    masked, target = _mask(vocab, tokens, whole_words=True, mask_prob=0.3)
    chosen = target != dictionary.pad()
    starts = word_start_table(dictionary)[tokens] | np.roll(np.isin(tokens, [dictionary.bos()]), 1)
    word_of = np.cumsum(starts)
    for word in np.unique(word_of[chosen]):
        in_word = word_of == word
        assert chosen[in_word].all(), [dictionary[t] for t in tokens[in_word]]
        # one decision per word: all <mask>, or all kept/replaced
        assert len({m == vocab[1] for m in masked[in_word]}) == 1
    words = np.unique(word_of[~np.isin(tokens, [dictionary.bos(), dictionary.eos()])])
    assert len(np.unique(word_of[chosen])) / len(words) == pytest.approx(0.3, abs=0.03)
    assert chosen.sum() > len(np.unique(word_of[chosen]))  # some chosen words have several pieces


def test_same_seed_same_mask_other_seed_other_mask(vocab):
    tokens = _sentences(vocab[0], np.random.default_rng(3), 50)
    first, again, other = _mask(vocab, tokens, seed=5), _mask(vocab, tokens, seed=5), _mask(vocab, tokens, seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])


def test_short_and_all_special_sequences(vocab):
    dictionary, _ = vocab
    masked, target = _mask(vocab, np.array([dictionary.bos(), dictionary.eos()]))
    assert (target == dictionary.pad()).all() and masked.tolist() == [dictionary.bos(), dictionary.eos()]


def _dataset(vocab, items=None, **kwargs):
    dictionary, mask_idx = vocab
    rng = np.random.default_rng(4)
    items = items or [torch.from_numpy(_sentences(dictionary, rng, 1, length=30)) for _ in range(6)]
    base = ListDataset(items, np.array([len(t) for t in items]))
    return items, XlmrMaskTokensDataset.apply_mask(
        base, dictionary, mask_idx, seed=1, mask_prob=0.3, leave_unmasked_prob=0.1, random_token_prob=0.1,
        mask_whole_words=False, **kwargs,
    )


def test_dataset_masks_anew_each_epoch_and_halves_agree(vocab):
    items, (source, target) = _dataset(vocab)
    source.set_epoch(1)
    epoch1 = [(source[i].clone(), target[i].clone()) for i in range(6)]
    assert all(torch.equal(s, source[i]) for i, (s, _) in enumerate(epoch1))  # deterministic per epoch
    for (src, tgt), item in zip(epoch1, items):
        chosen = tgt.ne(vocab[0].pad())
        assert torch.equal(tgt[chosen], item[chosen]) and torch.equal(src[~chosen], item[~chosen])
    target.set_epoch(2)  # both halves share one masking step
    assert any(not torch.equal(tgt, target[i]) for i, (_, tgt) in enumerate(epoch1))
    assert source.sizes.tolist() == [32] * 6


def test_fixed_mask_ignores_the_epoch(vocab):
    _, (source, _) = _dataset(vocab, fixed_mask=True)
    source.set_epoch(1)
    first = [source[i].clone() for i in range(6)]
    source.set_epoch(9)
    assert all(torch.equal(a, source[i]) for i, a in enumerate(first))


def test_item_key_decides_the_mask(vocab):
    twice = [torch.from_numpy(_sentences(vocab[0], np.random.default_rng(5), 1, length=60))] * 2
    _, (by_index, _) = _dataset(vocab, items=twice)
    _, (by_key, _) = _dataset(vocab, items=twice, item_key=lambda index: (7,))
    assert not torch.equal(by_index[0], by_index[1])  # the same tokens at two indices: two masks
    assert torch.equal(by_key[0], by_key[1])
