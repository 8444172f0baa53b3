"""Parallel-pair batches for TLM (XLM, Conneau & Lample, 2019) and contrastive alignment (VECO 2.0).

Items come from `xlmr binarize --para-dir` data (`<pair>/<split>.<lang>.{bin,idx}`, item i of both
sides one translation pair), pairs re-sampled with q ∝ p^α by `LanguageSamplingDataset`.
"""

from functools import lru_cache
from typing import Dict, List, Mapping, Optional, Set

import numpy as np
import torch
from fairseq.data import BaseWrapperDataset, Dictionary, FairseqDataset, data_utils

from fairseq_xlmr.data.language_sampling_dataset import LanguageSamplingDataset
from fairseq_xlmr.data.masking import mask_tokens, random_candidates, special_ids
from fairseq_xlmr.data.word_pairs import mine_positives, piece_words


def tlm_pair(src: np.ndarray, tgt: np.ndarray, bos: int, eos: int, src_lang: int, tgt_lang: int,
             pad: int, restart_positions: bool):
    """The TLM input `<s> A </s></s> B </s>` (XLM-R's pair encoding) with its language and position ids.

    Args:
        src: (a,) ids of A ending with </s>; tgt: (b,) ids of B ending with </s>.
        pad: the padding index; fairseq's learned positions start at pad + 1.
    Returns:
        tokens, lang ids, positions: each (a + b + 2,). The first segment (`<s> A </s>`) has src_lang,
        the second (`</s> B </s>`) tgt_lang; positions count on across both segments, or start again
        at the second with `restart_positions` (XLM's TLM).
    """
    first, second = len(src) + 1, len(tgt) + 1
    tokens = np.concatenate([[bos], src, [eos], tgt]).astype(np.int64)
    langs = np.concatenate([np.full(first, src_lang), np.full(second, tgt_lang)]).astype(np.int64)
    if restart_positions:
        positions = np.concatenate([np.arange(first), np.arange(second)]) + pad + 1
    else:
        positions = np.arange(first + second) + pad + 1
    return tokens, langs, positions.astype(np.int64)


class BitextDataset(FairseqDataset):
    """One language pair: item i = both sides of pair i, `<s>`-prefixed and cut to `max_side` tokens,
    with the dictionary-aligned word pairs (if a lexicon is given).

    Item dict: src, tgt (int64 tensors `<s> ... </s>`), pair (int), src_lang, tgt_lang (ints),
    src_word, tgt_word ((len,) word index of each piece or -1), positives ((k, 2) int64 word pairs).
    """

    def __init__(self, src, tgt, dictionary: Dictionary, pair_id: int, src_lang: int, tgt_lang: int,
                 max_side: int, lexicon: Optional[Mapping[str, Set[str]]] = None):
        super().__init__()
        assert len(src) == len(tgt), (len(src), len(tgt))
        self.src, self.tgt = src, tgt
        self.dictionary = dictionary
        self.pair_id, self.src_lang, self.tgt_lang = pair_id, src_lang, tgt_lang
        self.max_side = max_side
        self.lexicon = lexicon
        # `<s>` + up to max_side - 1 tokens (the last one kept as </s>) per side.
        self.src_sizes = np.minimum(src.sizes, max_side - 1) + 1
        self.tgt_sizes = np.minimum(tgt.sizes, max_side - 1) + 1
        # TLM length: `<s> A </s></s> B </s>` = |A </s>| + |B </s>| + 2.
        self.sizes = self.src_sizes + self.tgt_sizes

    def __len__(self):
        return len(self.src)

    def _side(self, dataset, index):
        tokens = dataset[index]
        if len(tokens) > self.max_side - 1:  # keep the final </s>
            tokens = torch.cat([tokens[: self.max_side - 2], tokens[-1:]])
        return torch.cat([tokens.new([self.dictionary.bos()]), tokens]).long()

    def _words(self, tokens: torch.Tensor):
        ids = tokens.tolist()
        pieces = [self.dictionary.symbols[i] for i in ids]
        return piece_words(pieces, [i < self.dictionary.nspecial for i in ids])

    def __getitem__(self, index):
        src, tgt = self._side(self.src, index), self._side(self.tgt, index)
        src_word, src_words = self._words(src)
        tgt_word, tgt_words = self._words(tgt)
        positives = mine_positives(src_words, tgt_words, self.lexicon) if self.lexicon else []
        return {
            "src": src, "tgt": tgt, "pair": self.pair_id, "src_lang": self.src_lang, "tgt_lang": self.tgt_lang,
            "src_word": torch.tensor(src_word, dtype=torch.long), "tgt_word": torch.tensor(tgt_word, dtype=torch.long),
            "positives": torch.tensor(positives, dtype=torch.long).view(-1, 2),
        }

    def num_tokens(self, index):
        return self.sizes[index]

    def size(self, index):
        return self.sizes[index]

    @property
    def supports_prefetch(self):
        return False


class ParallelBatchDataset(BaseWrapperDataset):
    """α-sampled pairs with a fresh TLM mask per epoch (keyed like MLM masking) and their collater.

    Batch dict (all padded with pad, word indices with -1):
        src_tokens (B, Ls), tgt_tokens (B, Lt), pair_id, src_lang, tgt_lang (B,);
        tlm_tokens, tlm_target, tlm_lang (B, L), and tlm_positions (B, L) with restart_positions;
        src_word (B, Ls), tgt_word (B, Lt), positives (B, Ws, Wt) bool; nsentences.
    """

    def __init__(self, sampled: LanguageSamplingDataset, dictionary: Dictionary, mask_idx: int, seed: int,
                 mask_prob: float, leave_unmasked_prob: float, random_token_prob: float,
                 restart_positions: bool, fixed_mask: bool = False):
        super().__init__(sampled)
        self.dictionary, self.mask_idx, self.seed = dictionary, mask_idx, seed
        self.mask_args = (mask_prob, leave_unmasked_prob, random_token_prob)
        self.special_ids = special_ids(dictionary, mask_idx)
        self.random_candidates = random_candidates(dictionary, mask_idx)
        self.restart_positions = restart_positions
        self.fixed_mask = fixed_mask
        self.epoch = 0

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, index):
        return self._item(0 if self.fixed_mask else self.epoch, index)

    @lru_cache(maxsize=8)
    def _item(self, epoch: int, index: int) -> Dict:
        item = dict(self.dataset[index])
        d = self.dictionary
        # Both sides without their own <s>: the pair gets one <s> in front.
        tokens, langs, positions = tlm_pair(item["src"][1:].numpy(), item["tgt"][1:].numpy(), d.bos(), d.eos(),
                                            item["src_lang"], item["tgt_lang"], d.pad(), self.restart_positions)
        # Seeded by (seed, epoch, pair, index in pair, copy): like MLM masking, resumable and per copy.
        rng = np.random.default_rng([self.seed, epoch, 1, *self.dataset.item_key(index)])
        masked, target = mask_tokens(tokens, rng, *self.mask_args, self.special_ids, self.mask_idx,
                                     self.random_candidates, d.pad())
        item.update(tlm_tokens=torch.from_numpy(masked), tlm_target=torch.from_numpy(target),
                    tlm_lang=torch.from_numpy(langs), tlm_positions=torch.from_numpy(positions))
        return item

    def collater(self, samples: List[Dict]):
        if not samples:
            return {}
        pad = self.dictionary.pad()

        def stack(key, value=pad):
            return data_utils.collate_tokens([s[key] for s in samples], value)

        num_src = max(int(s["src_word"].max()) + 1 for s in samples)
        num_tgt = max(int(s["tgt_word"].max()) + 1 for s in samples)
        positives = torch.zeros(len(samples), max(num_src, 1), max(num_tgt, 1), dtype=torch.bool)
        for b, s in enumerate(samples):
            if len(s["positives"]):
                positives[b, s["positives"][:, 0], s["positives"][:, 1]] = True
        batch = {
            "id": torch.tensor([s.get("id", i) for i, s in enumerate(samples)]),
            "nsentences": len(samples),
            "src_tokens": stack("src"), "tgt_tokens": stack("tgt"),
            "pair_id": torch.tensor([s["pair"] for s in samples]),
            "src_lang": torch.tensor([s["src_lang"] for s in samples]),
            "tgt_lang": torch.tensor([s["tgt_lang"] for s in samples]),
            "tlm_tokens": stack("tlm_tokens"), "tlm_target": stack("tlm_target"),
            "tlm_lang": stack("tlm_lang", 0),
            "src_word": stack("src_word", -1), "tgt_word": stack("tgt_word", -1),
            "positives": positives,
        }
        if self.restart_positions:  # otherwise the model's own running positions are the same
            batch["tlm_positions"] = stack("tlm_positions")
        return batch

    @property
    def sizes(self):
        return self.dataset.sizes

    def num_tokens(self, index):
        return self.dataset.num_tokens(index)

    def size(self, index):
        return self.dataset.size(index)

    def ordered_indices(self):
        return self.dataset.ordered_indices()

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return self.dataset.can_reuse_epoch_itr_across_epochs
