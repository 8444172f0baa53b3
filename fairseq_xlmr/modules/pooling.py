"""Sentence vectors from token states (the `<s>` state or the mean over real tokens), and their centring."""

import torch


def pool_sequence(states: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """The `<s>` state ("cls") or the mean over real tokens ("mean").

    Args:
        states: (batch, seq_len, dim); mask: (batch, seq_len) bool, True at real tokens (not padding).
    Returns:
        (batch, dim).
    """
    if pooling == "cls":
        return states[:, 0]
    mask = mask.unsqueeze(-1).to(states)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1)


def center_columns(x: torch.Tensor) -> torch.Tensor:
    """`(n, d)` -> `(n, d)` with every column's mean removed."""
    return x - x.mean(0, keepdim=True)
