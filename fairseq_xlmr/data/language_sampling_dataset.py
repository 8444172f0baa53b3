"""The per-language datasets of a task as one, re-sampled every epoch by XLM-R's smoothed language sampling."""

import logging
from typing import Optional, Sequence, Tuple

import numpy as np
from fairseq.data import FairseqDataset

from fairseq_xlmr.data.language_sampling import draw_epoch_indices

logger = logging.getLogger(__name__)


class LanguageSamplingDataset(FairseqDataset):
    """The concatenation of per-language datasets, re-sampled by `ratios` every epoch.

    Position i of an epoch holds item `local_indices[i]` of `datasets[dataset_ids[i]]`. Positions
    are in language order and each language always gets round(ratio_i × n_i) of them, so the
    length and `lang_ids` never change; `sizes` is updated in place by `set_epoch`, so wrappers
    that captured it (NestedDictionaryDataset, SortDataset) see the current epoch. Wrap masking
    around this dataset, keyed by `item_key`: then every copy of an up-sampled item gets its own
    mask. With all ratios 1 it is the plain concatenation (how evaluation splits use it).

    Args:
        datasets: one FairseqDataset per language, each with a `sizes` array.
        ratios: (num_languages,) ratio_i from `size_ratios`.
        seed: shared seed; the draw depends only on (seed, epoch).
        epoch: the epoch drawn at construction (fairseq counts from 1).
        language_ids: the id that items of each dataset report in `lang_ids` (default 0, 1, ...),
            e.g. positions in the task's full language list when only some languages are loaded.
    """

    def __init__(self, datasets: Sequence[FairseqDataset], ratios: Sequence[float], seed: int, epoch: int = 1,
                 language_ids: Optional[Sequence[int]] = None):
        super().__init__()
        assert len(datasets) == len(ratios) > 0, (len(datasets), len(ratios))
        assert all(len(d) > 0 for d in datasets), [len(d) for d in datasets]
        self.datasets = list(datasets)
        self.ratios = np.asarray(ratios, dtype=np.float64)
        self.seed = seed
        self.language_ids = np.arange(len(datasets)) if language_ids is None else np.asarray(language_ids)
        assert len(self.language_ids) == len(datasets)
        self._base_sizes = [self._sizes_of(d) for d in self.datasets]
        self.epoch = None
        self._sizes = None
        self.set_epoch(epoch)

    @staticmethod
    def _sizes_of(dataset) -> np.ndarray:
        # NestedDictionaryDataset keeps a list of size arrays; MLM items have a single one.
        sizes = dataset.sizes
        return sizes[0] if isinstance(sizes, (list, tuple)) else sizes

    def set_epoch(self, epoch: int):
        super().set_epoch(epoch)
        for dataset in self.datasets:
            dataset.set_epoch(epoch)
        if epoch == self.epoch:
            return
        self.epoch = epoch
        lengths = [len(d) for d in self.datasets]
        drawn = draw_epoch_indices(lengths, self.ratios, self.seed, epoch)
        sizes = np.concatenate([base[idx] for base, idx in zip(self._base_sizes, drawn)])
        self.local_indices = np.concatenate(drawn)
        # Copy number of each occurrence: draw_epoch_indices lays out full copies, then the rest.
        self.copies = np.concatenate([np.arange(len(idx)) // n for idx, n in zip(drawn, lengths)])
        if self._sizes is None:
            self.dataset_ids = np.concatenate([np.full(len(idx), i, dtype=np.int64) for i, idx in enumerate(drawn)])
            self.lang_ids = self.language_ids[self.dataset_ids]
            self._sizes = sizes
        else:
            self._sizes[:] = sizes  # in place: see the class docstring
        logger.debug("epoch %d: drew %s items per language", epoch, [len(idx) for idx in drawn])

    def counts_per_language(self) -> np.ndarray:
        """(num_datasets,) number of items drawn from each dataset per epoch."""
        return np.bincount(self.dataset_ids, minlength=len(self.datasets))

    def language_of(self, index: int) -> int:
        """The language id (see `language_ids`) that item `index` comes from."""
        return int(self.lang_ids[index])

    def item_key(self, index: int) -> Tuple[int, int, int]:
        """(language id, index within the language, copy number in this epoch) of item `index`.

        The same underlying item gets the same key in any split that holds it, and each copy of
        an up-sampled item a different one: masking seeds from it.
        """
        return int(self.lang_ids[index]), int(self.local_indices[index]), int(self.copies[index])

    def __getitem__(self, index):
        return self.datasets[self.dataset_ids[index]][self.local_indices[index]]

    def __len__(self):
        return len(self.local_indices)

    def collater(self, samples):
        return self.datasets[0].collater(samples)

    @property
    def sizes(self) -> np.ndarray:
        return self._sizes

    def num_tokens(self, index):
        return self._sizes[index]

    def num_tokens_vec(self, indices):
        return self._sizes[indices]

    def size(self, index):
        return self._sizes[index]

    def ordered_indices(self):
        # Shuffle first so equal-size items from different languages interleave; seeded like
        # the draw so every worker builds the same batches.
        shuffle = np.random.default_rng([self.seed, self.epoch, 1]).permutation(len(self))
        return np.lexsort([shuffle, self._sizes])

    @property
    def supports_prefetch(self):
        return all(d.supports_prefetch for d in self.datasets)

    def prefetch(self, indices):
        indices = np.asarray(indices)
        for lang, dataset in enumerate(self.datasets):
            dataset.prefetch(self.local_indices[indices[self.dataset_ids[indices] == lang]])

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        # Re-drawn items have other sizes, so batches must be rebuilt; ratios of 1 never change.
        return bool(np.all(self.ratios == 1.0))
