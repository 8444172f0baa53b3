"""States of a frozen encoder bottom, computed once per sentence while fine-tuning.

With `--freeze-layers N` the embeddings and the first N layers do not train and run without dropout (a
frozen feature extractor, as probing studies use one), so a sentence's states after layer N are the same
in every epoch and in every validation. This cache keeps them, keyed by the sentence's token ids, within a
memory budget: later epochs run only the layers above N. A sentence's states do not depend on the others
in its batch (padding is masked), so the cached states equal recomputed ones up to float rounding.
"""

from typing import Callable, Dict

import torch


class FrozenStatesCache:
    """{token ids of one sentence: its `(length, dim)` states after the frozen layers}, up to `budget_bytes`."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self.states: Dict[bytes, torch.Tensor] = {}

    def __len__(self):
        return len(self.states)

    def lookup(self, src_tokens: torch.Tensor, padding_mask: torch.Tensor,
               compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """`(seq_len, batch, dim)` states of right-padded `src_tokens` `(batch, seq_len)`, zero at padding.

        `compute(tokens)` gives the states of the sentences not cached yet, `(seq_len', n, dim)`.
        """
        lengths = (~padding_mask).sum(dim=1).tolist()
        rows = src_tokens.cpu().numpy()
        keys = [rows[i, :n].tobytes() for i, n in enumerate(lengths)]
        missing = [i for i, key in enumerate(keys) if key not in self.states]
        fresh = {}
        if missing:
            longest = max(lengths[i] for i in missing)
            computed = compute(src_tokens[missing, :longest])
            for j, i in enumerate(missing):
                fresh[i] = computed[:lengths[i], j]
                size = fresh[i].numel() * fresh[i].element_size()
                if self.used_bytes + size <= self.budget_bytes and keys[i] not in self.states:
                    self.states[keys[i]] = fresh[i].clone()  # not a view into the whole batch
                    self.used_bytes += size
        first = fresh[missing[0]] if missing else self.states[keys[0]]
        out = first.new_zeros(src_tokens.shape[1], src_tokens.shape[0], first.shape[-1])
        for i, key in enumerate(keys):
            out[:lengths[i], i] = fresh[i] if i in fresh else self.states[key]
        return out
