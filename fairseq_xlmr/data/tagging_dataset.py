"""Tagged sentences as batches of sub-word windows (see `label_alignment`), one dataset item per sentence."""

from typing import List, Sequence

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from fairseq_xlmr.data.label_alignment import IGNORE_INDEX, WindowExample


class TaggingWindowsDataset(FairseqDataset):
    """Item i = sentence i: its windows, language and word count.

    A batch of sentences collates into all their windows (so a sentence longer than the model
    input is scored in one batch, each word once):
      net_input.src_tokens (windows, seq_len), target (windows, seq_len) label ids or IGNORE_INDEX,
      word_index (windows, seq_len) scored word or -1, window_sentence (windows,) row of the
      window's sentence, language (sentences,), num_words (sentences,).
    """

    def __init__(self, windows: Sequence[List[WindowExample]], languages: Sequence[int], num_words: Sequence[int],
                 pad: int, seed: int, shuffle: bool = True):
        self.windows = list(windows)
        self.languages = np.asarray(languages, dtype=np.int64)
        # Words of each sentence as read (not as scored), so a word left out of every window is caught.
        self.num_words = np.asarray(num_words, dtype=np.int64)
        self.sizes = np.array([max(len(window.tokens) for window in item) for item in self.windows], dtype=np.int64)
        self._num_tokens = np.array([sum(len(window.tokens) for window in item) for item in self.windows],
                                    dtype=np.int64)
        self.pad = pad
        self.seed = seed
        self.shuffle = shuffle

    def __getitem__(self, index):
        return {"id": index, "windows": self.windows[index], "language": self.languages[index],
                "num_words": self.num_words[index]}

    def __len__(self):
        return len(self.windows)

    def num_tokens(self, index):
        return self._num_tokens[index]

    def num_tokens_vec(self, indices):
        return self._num_tokens[indices]

    def size(self, index):
        return self.sizes[index]

    def ordered_indices(self):
        if not self.shuffle:
            return np.arange(len(self))
        # One seeded shuffle (as sentence classification); the batch order changes every epoch.
        with data_utils.numpy_seed(self.seed):
            return np.random.permutation(len(self))

    def collater(self, samples):
        if not samples:
            return {}
        windows = [(row, window) for row, sample in enumerate(samples) for window in sample["windows"]]
        max_len = max(len(window.tokens) for _, window in windows)

        def pad(values: List[int], fill: int) -> List[int]:
            return values + [fill] * (max_len - len(values))

        src_tokens = torch.tensor([pad(window.tokens, self.pad) for _, window in windows])
        return {
            "id": torch.tensor([sample["id"] for sample in samples]),
            "nsentences": len(samples),
            "ntokens": sum(len(window.tokens) for _, window in windows),
            "net_input": {
                "src_tokens": src_tokens,
                "src_lengths": torch.tensor([len(window.tokens) for _, window in windows]),
            },
            "target": torch.tensor([pad(window.labels, IGNORE_INDEX) for _, window in windows]),
            "word_index": torch.tensor([pad(window.word_index, -1) for _, window in windows]),
            "window_sentence": torch.tensor([row for row, _ in windows]),
            "language": torch.tensor([int(sample["language"]) for sample in samples]),
            "num_words": torch.tensor([int(sample["num_words"]) for sample in samples]),
        }
