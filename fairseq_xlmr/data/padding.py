"""Right padding up to a multiple of a length, so that a run sees few distinct batch shapes."""

from fairseq.data import BaseWrapperDataset, data_utils


class PadToMultipleDataset(BaseWrapperDataset):
    """RightPadDataset whose batches are `(batch, ceil(longest / multiple) * multiple)`.

    Why: with variable-length samples every batch has a new length, and on GPU each new shape costs a
    new cuDNN attention plan (and a torch.compile guard miss); a multiple of 64 leaves at most
    seq_len / 64 shapes. fairseq 0.12's RightPadDataset has no such option.
    """

    def __init__(self, dataset, pad_idx: int, multiple: int = 1):
        super().__init__(dataset)
        self.pad_idx, self.multiple = pad_idx, multiple

    def collater(self, samples):
        return data_utils.collate_tokens(samples, self.pad_idx, left_pad=False, pad_to_multiple=self.multiple)
