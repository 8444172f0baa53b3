"""Exponentially smoothed language sampling of XLM-R (Conneau et al., 2020, §3.1): q_i ∝ p_i^α, as pure functions
(the dataset that draws epochs with them: language_sampling_dataset.py)."""

from typing import List, Sequence

import numpy as np


def check_alpha(alpha: float):
    """Raise for a smoothing exponent outside (0, 1]."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(
            f"`task.multilang_sampling_alpha` must be in (0, 1], got {alpha}; XLM-R used 0.3."
        )


def sampling_probs(counts: Sequence[float], alpha: float) -> np.ndarray:
    """Smoothed sampling probabilities q_i = p_i^α / Σ_j p_j^α with p_i = n_i / Σ_j n_j.

    Args:
        counts: (num_languages,) sentence (or token) counts n_i, all > 0.
        alpha: smoothing exponent in (0, 1]; 1 keeps the natural distribution, → 0 tends to uniform.
    Returns:
        (num_languages,) float64 probabilities summing to 1.
    """
    check_alpha(alpha)
    counts = np.asarray(counts, dtype=np.float64)
    assert counts.ndim == 1 and len(counts) > 0 and (counts > 0).all(), counts
    p = counts / counts.sum()
    q = p**alpha
    return q / q.sum()


def size_ratios(counts: Sequence[float], probs: Sequence[float]) -> np.ndarray:
    """Per-language up/down-sampling ratios that keep the epoch as large as the data.

    ratio_i = q_i × Σ_j n_j / n_i: drawing ratio_i × n_i items of language i gives Σ n items in all,
    a fraction q_i of them from language i. ratio > 1 means up-sampled, < 1 down-sampled.
    Returns:
        (num_languages,) float64 ratios.
    """
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    assert counts.shape == probs.shape, (counts.shape, probs.shape)
    return probs * counts.sum() / counts


def draw_epoch_indices(
    lengths: Sequence[int], ratios: Sequence[float], seed: int, epoch: int
) -> List[np.ndarray]:
    """Per language, the local indices of the items to use in one epoch.

    Language i gets round(ratio_i × n_i) items: every item `floor(ratio_i)` times (full copies), then
    the remainder drawn without replacement. Compared with drawing all with replacement this
    sees every sentence of an up-sampled language each epoch and has less variance. Depends only
    on (seed, epoch), so every distributed worker draws the same epoch.
    Returns:
        one int64 array per language, of length round(ratio_i × n_i).
    """
    rng = np.random.default_rng([seed, epoch])
    drawn = []
    for n, ratio in zip(lengths, ratios):
        target = int(round(ratio * n))
        copies, remainder = divmod(target, n)
        drawn.append(
            np.concatenate(
                [np.tile(np.arange(n, dtype=np.int64), copies), rng.choice(n, remainder, replace=False)]
            ).astype(np.int64)
        )
    return drawn
