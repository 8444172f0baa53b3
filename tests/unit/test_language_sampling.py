"""α-smoothed language sampling (XLM-R §3.1): probabilities, ratios and the per-epoch draw."""

import numpy as np
import pytest
import torch
from fairseq.data import ListDataset

from fairseq_xlmr.data.language_sampling import draw_epoch_indices, sampling_probs, size_ratios
from fairseq_xlmr.data.language_sampling_dataset import LanguageSamplingDataset


def test_sampling_probs_match_hand_computed_values():
    # p = (0.9, 0.09, 0.01); α = 0.5: p^α = (0.948683, 0.3, 0.1), sum 1.348683.
    q = sampling_probs([900, 90, 10], alpha=0.5)
    np.testing.assert_allclose(q, [0.948683 / 1.348683, 0.3 / 1.348683, 0.1 / 1.348683], rtol=1e-5)
    np.testing.assert_allclose(q, [0.703414, 0.222439, 0.074146], atol=1e-6)


def test_alpha_one_is_proportional_and_tiny_alpha_is_uniform():
    counts = [600, 300, 100]
    np.testing.assert_allclose(sampling_probs(counts, 1.0), [0.6, 0.3, 0.1])
    np.testing.assert_allclose(sampling_probs(counts, 1e-6), [1 / 3] * 3, atol=1e-5)


def test_smaller_alpha_up_samples_the_smallest_language():
    counts = [10_000, 100]
    assert sampling_probs(counts, 0.3)[1] > sampling_probs(counts, 0.7)[1] > sampling_probs(counts, 1.0)[1]


@pytest.mark.parametrize("alpha", [0.0, -0.3, 1.7])
def test_alpha_outside_unit_interval_is_rejected(alpha):
    with pytest.raises(ValueError) as err:
        sampling_probs([1, 2], alpha)
    assert str(err.value) == (
        f"`task.multilang_sampling_alpha` must be in (0, 1], got {alpha}; XLM-R used 0.3."
    )


def test_size_ratios_keep_the_epoch_size_and_give_shares_q():
    counts = np.array([600.0, 300.0, 100.0])
    q = sampling_probs(counts, 0.3)
    ratios = size_ratios(counts, q)
    # Hand-computed for α = 0.3: q = (0.41729, 0.33894, 0.24377).
    np.testing.assert_allclose(ratios, [0.695475, 1.129803, 2.437741], rtol=1e-5)
    assert (ratios * counts).sum() == pytest.approx(counts.sum())
    np.testing.assert_allclose(ratios * counts / counts.sum(), q)


def test_draw_uses_full_copies_then_a_remainder_without_replacement():
    lengths, ratios = [50, 20], [0.5, 2.5]
    down, up = draw_epoch_indices(lengths, ratios, seed=3, epoch=1)
    assert len(down) == 25 and len(set(down.tolist())) == 25  # no repeats when down-sampled
    assert len(up) == 50
    times = np.bincount(up, minlength=20)
    assert set(times.tolist()) == {2, 3} and (times == 3).sum() == 10  # 2 copies + 10 of the 20 again


def _languages(sizes_per_lang):
    """One ListDataset per language; item j of language l is the tensor [l, j]."""
    return [
        ListDataset([torch.tensor([lang, j]) for j in range(len(sizes))], np.array(sizes))
        for lang, sizes in enumerate(sizes_per_lang)
    ]


def _sampled(epoch=1, seed=7, ratios=(0.5, 3.0)):
    return LanguageSamplingDataset(_languages([list(range(1, 41)), [5, 6, 7, 8, 9]]), ratios, seed, epoch)


def test_epoch_has_round_ratio_times_n_items_of_each_language():
    dataset = _sampled()
    assert dataset.counts_per_language().tolist() == [20, 15]
    assert len(dataset) == 35
    for i in range(len(dataset)):
        lang, local = dataset[i].tolist()
        assert lang == dataset.language_of(i) and local == dataset.local_indices[i]
        assert dataset.sizes[i] == dataset.datasets[lang].sizes[local]


def test_draw_is_deterministic_per_seed_and_epoch_and_changes_across_epochs():
    assert np.array_equal(_sampled(epoch=2).local_indices, _sampled(epoch=2).local_indices)
    assert not np.array_equal(_sampled(epoch=1).local_indices, _sampled(epoch=2).local_indices)
    assert not np.array_equal(_sampled(seed=1).local_indices, _sampled(seed=2).local_indices)


def test_set_epoch_redraws_in_place_and_returns_to_earlier_draws():
    dataset = _sampled(epoch=1)
    first, sizes = dataset.local_indices.copy(), dataset.sizes
    dataset.set_epoch(2)
    assert np.array_equal(dataset.local_indices, _sampled(epoch=2).local_indices)
    assert dataset.sizes is sizes  # wrappers that captured `sizes` see the new epoch
    dataset.set_epoch(1)
    assert np.array_equal(dataset.local_indices, first)
    assert not dataset.can_reuse_epoch_itr_across_epochs


def test_copies_of_an_up_sampled_item_have_different_keys():
    dataset = _sampled()
    keys = [dataset.item_key(i) for i in range(len(dataset))]
    assert len(set(keys)) == len(keys)
    assert {copy for lang, _, copy in keys if lang == 1} == {0, 1, 2}


def test_ratios_of_one_give_the_plain_concatenation_with_given_language_ids():
    dataset = LanguageSamplingDataset(_languages([[3, 1], [2]]), [1.0, 1.0], seed=0, language_ids=[4, 9])
    assert [dataset[i].tolist() for i in range(3)] == [[0, 0], [0, 1], [1, 0]]
    assert dataset.lang_ids.tolist() == [4, 4, 9]
    assert dataset.can_reuse_epoch_itr_across_epochs


def test_ordered_indices_sort_by_size_and_collater_delegates():
    dataset = _sampled()
    order = dataset.ordered_indices()
    assert sorted(order.tolist()) == list(range(len(dataset)))
    assert np.all(np.diff(dataset.sizes[order]) >= 0)
    assert dataset.collater([dataset[0], dataset[1]]) == [dataset[0], dataset[1]]
