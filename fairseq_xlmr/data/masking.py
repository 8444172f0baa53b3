"""Dynamic 80/10/10 token masking of BERT/RoBERTa as used by XLM-R (Conneau et al., 2020)."""

from functools import lru_cache
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from fairseq.data import BaseWrapperDataset, Dictionary

SPM_WORD_START = "\u2581"  # SentencePiece's "▁": the piece begins a new word


def special_ids(dictionary: Dictionary, mask_idx: int) -> np.ndarray:
    """Ids that are never masked: <s>, <pad>, </s>, <unk>, extra specials and <mask>."""
    return np.array(sorted(set(range(dictionary.nspecial)) | {mask_idx}), dtype=np.int64)


def random_candidates(dictionary: Dictionary, mask_idx: int) -> np.ndarray:
    """Ids a masked token may be replaced with: ordinary pieces only (no specials, no <mask>,
    no `madeupword` fillers that pad the vocabulary and never occur in data)."""
    excluded = set(special_ids(dictionary, mask_idx).tolist())
    return np.array(
        [
            i
            for i, symbol in enumerate(dictionary.symbols)
            if i not in excluded and not symbol.startswith("madeupword")
        ],
        dtype=np.int64,
    )


def word_start_table(dictionary: Dictionary) -> np.ndarray:
    """(vocab_size,) bool: True where the piece begins a word (starts with SentencePiece's "▁").

    Specials count as word starts, so a word never spans <s> or </s>.
    """
    table = np.array([symbol.startswith(SPM_WORD_START) for symbol in dictionary.symbols])
    table[: dictionary.nspecial] = True
    return table


def mask_tokens(
    tokens: np.ndarray,
    rng: np.random.Generator,
    mask_prob: float,
    leave_unmasked_prob: float,
    random_token_prob: float,
    special_ids: np.ndarray,
    mask_idx: int,
    random_candidates: np.ndarray,
    pad_idx: int,
    word_starts: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Choose mask_prob of the maskable units, then replace 80 % by <mask>, 10 % by random pieces
    and leave 10 % unchanged (with the default probabilities).

    A unit is a token, or with `word_starts` a whole word: a piece marked as a word start plus the
    pieces that follow it. Special tokens are never chosen.

    Args:
        tokens: (seq_len,) int64 token ids.
        rng: the generator all randomness comes from (deterministic for a given seed).
        special_ids: ids that are never masked (see `special_ids`).
        random_candidates: ids random replacements are drawn from (see `random_candidates`).
        pad_idx: fills the target where nothing is predicted.
        word_starts: optional (vocab_size,) bool, True where a piece begins a word.
    Returns:
        masked_input: (seq_len,) int64, the model input.
        target: (seq_len,) int64, the original id at chosen positions and `pad_idx` elsewhere.
    """
    assert tokens.ndim == 1, tokens.shape
    is_special = np.isin(tokens, special_ids)
    if word_starts is None:
        unit_start = np.ones(len(tokens), dtype=bool)
    else:
        # A piece right after a special (e.g. the first piece after <s>) also opens a word.
        unit_start = word_starts[tokens] | is_special | np.roll(is_special, 1)
    unit_start[:1] = True
    unit_of_token = np.cumsum(unit_start) - 1
    # Specials are single-token units, so a unit is maskable iff its first token is ordinary.
    maskable_units = np.flatnonzero(~is_special[unit_start])

    # Probabilistic rounding keeps the expected masked fraction exact even on short sequences.
    num_mask = int(mask_prob * len(maskable_units) + rng.random())
    chosen = rng.choice(maskable_units, num_mask, replace=False)
    # One draw per chosen unit decides what the model sees: below random_token_prob a random
    # piece, then leave_unmasked_prob the piece itself, the rest (80 % by default) <mask>.
    decision = rng.random(num_mask)
    num_units = int(unit_of_token[-1]) + 1 if len(tokens) else 0
    chosen_unit, random_unit, masked_unit = (np.zeros(num_units, dtype=bool) for _ in range(3))
    chosen_unit[chosen] = True
    random_unit[chosen[decision < random_token_prob]] = True
    masked_unit[chosen[decision >= random_token_prob + leave_unmasked_prob]] = True

    is_chosen, is_random = chosen_unit[unit_of_token], random_unit[unit_of_token]
    target = np.where(is_chosen, tokens, pad_idx)
    masked_input = np.where(masked_unit[unit_of_token], mask_idx, tokens)
    masked_input[is_random] = rng.choice(random_candidates, int(is_random.sum()))
    return masked_input, target


class XlmrMaskTokensDataset(BaseWrapperDataset):
    """Masks every item anew each epoch; item i is the pair (masked_input, target), each (seq_len,).

    The mask depends only on (seed, epoch, item_key(index)), so every worker and every resume sees
    the same mask; `item_key` defaults to the index (LanguageSamplingDataset.item_key tells copies
    of an up-sampled item apart and gives an item the same mask in every split that holds it).
    With `fixed_mask` the epoch is ignored: validation losses stay comparable across epochs.
    Use `apply_mask` to get the two halves as separate datasets. Only the noise changes with the
    epoch, so iterators are as reusable as the wrapped dataset says (BaseWrapperDataset's default).
    """

    def __init__(
        self,
        dataset,
        dictionary: Dictionary,
        mask_idx: int,
        seed: int,
        mask_prob: float,
        leave_unmasked_prob: float,
        random_token_prob: float,
        mask_whole_words: bool,
        fixed_mask: bool = False,
        item_key: Optional[Callable[[int], Sequence[int]]] = None,
    ):
        super().__init__(dataset)
        assert 0.0 < mask_prob < 1.0 and leave_unmasked_prob + random_token_prob <= 1.0
        self.seed = seed
        self.mask_idx = mask_idx
        self.pad_idx = dictionary.pad()
        self.mask_prob = mask_prob
        self.leave_unmasked_prob = leave_unmasked_prob
        self.random_token_prob = random_token_prob
        self.special_ids = special_ids(dictionary, mask_idx)
        self.random_candidates = random_candidates(dictionary, mask_idx)
        self.word_starts = word_start_table(dictionary) if mask_whole_words else None
        self.fixed_mask = fixed_mask
        self.item_key = item_key
        self.epoch = 0

    @classmethod
    def apply_mask(cls, dataset, *args, **kwargs):
        """(masked inputs, targets) as two datasets sharing one cached masking step."""
        masked = cls(dataset, *args, **kwargs)
        return _PairElementDataset(masked, 0), _PairElementDataset(masked, 1)

    def set_epoch(self, epoch, **unused):
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, index):
        return self._masked(0 if self.fixed_mask else self.epoch, index)

    @lru_cache(maxsize=8)
    def _masked(self, epoch: int, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        # Source and target are read one after the other, so the cache holds both halves.
        key = (index,) if self.item_key is None else tuple(self.item_key(index))
        rng = np.random.default_rng([self.seed, epoch, *key])
        masked_input, target = mask_tokens(
            self.dataset[index].numpy(),
            rng,
            self.mask_prob,
            self.leave_unmasked_prob,
            self.random_token_prob,
            self.special_ids,
            self.mask_idx,
            self.random_candidates,
            self.pad_idx,
            self.word_starts,
        )
        return torch.from_numpy(masked_input), torch.from_numpy(target)


class _PairElementDataset(BaseWrapperDataset):
    """One element (0: masked input, 1: target) of each pair item of the wrapped dataset."""

    def __init__(self, dataset: XlmrMaskTokensDataset, element: int):
        super().__init__(dataset)
        self.element = element

    def __getitem__(self, index):
        return self.dataset[index][self.element]
