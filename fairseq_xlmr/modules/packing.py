"""Transformer layers on the real tokens only: a padded batch packed to `(tokens, 1, dim)`.

Fine-tuning batches are padded to their longest sentence, and on sentence-classification and tagging sets a
third to a half of the positions are padding; every projection, feed-forward, LayerNorm and dropout of a
layer would spend that share on positions nobody reads. Only attention needs the padded layout, so a layer
runs on the packed real tokens, and attention unpacks its queries, keys and values, runs on the padded
batch (padding masked as before), and packs its output again. Every real token's value is what the padded
computation gives (up to float rounding); padding positions come back as zeros.
"""

import torch

# Below this share of padding, the gathers cost about what they save.
MIN_PADDING_SHARE = 0.1


class PackedTokens:
    """Where the real tokens of a `(batch, seq_len)` batch sit in fairseq's `(seq_len, batch, dim)` layout.

    Handed to the layers in place of their `encoder_padding_mask`; the attention module reads it.
    """

    def __init__(self, padding_mask: torch.Tensor):
        self.padding_mask = padding_mask  # (batch, seq_len), True at padding
        self.batch, self.seq_len = padding_mask.shape
        # Flat positions t * batch + b of the real tokens, in (seq_len, batch) order.
        self.index = (~padding_mask).transpose(0, 1).reshape(-1).nonzero().squeeze(1)

    @staticmethod
    def worth_it(padding_mask: torch.Tensor) -> bool:
        return padding_mask.numel() > 0 and padding_mask.float().mean().item() >= MIN_PADDING_SHARE

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """`(seq_len, batch, dim)` -> `(tokens, 1, dim)`."""
        return x.reshape(self.seq_len * self.batch, -1).index_select(0, self.index).unsqueeze(1)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """`(tokens, 1, dim)` -> `(seq_len, batch, dim)`, zeros at padding."""
        flat = x.new_zeros(self.seq_len * self.batch, x.shape[-1]).index_copy(0, self.index, x.squeeze(1))
        return flat.view(self.seq_len, self.batch, -1)
