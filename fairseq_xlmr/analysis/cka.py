"""Centered kernel alignment (Kornblith et al., 2019) between layers, as used by Conneau, Wu et al. (2020),
"Emerging Cross-lingual Structure in Pretrained Language Models", to compare monolingual and bilingual models.

CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), with K, L the Gram matrices of the n examples
(rows) of X `(n, d1)` and Y `(n, d2)` and HSIC(K, L) = tr(K H L H) up to a constant, H = I - 11ᵀ/n.
Linear CKA (K = XXᵀ) reduces to ||YᵀX||²_F / (||XᵀX||_F ||YᵀY||_F) on column-centred X, Y; it is
invariant to orthogonal transforms and isotropic scaling of either side, not to arbitrary linear maps.
"""

from typing import Dict, Sequence

import torch

from fairseq_xlmr.modules.pooling import center_columns

KERNELS = ("linear", "rbf")


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of x `(n, d1)` and y `(n, d2)` (rows are the same n examples) in [0, 1].

    Computed in float64 in feature space (d×d products), which is cheaper than n×n Gram matrices
    when n > d, as for a few thousand sentences and hidden sizes of a few hundred.
    """
    _check_pair(x, y)
    x, y = center_columns(x.double()), center_columns(y.double())
    cross = (y.T @ x).pow(2).sum()
    norm = (x.T @ x).norm() * (y.T @ y).norm()
    if norm == 0:
        raise ValueError("linear CKA is undefined for a constant representation (every row the same); "
                         "give at least two distinct rows on each side.")
    return float(cross / norm)


def rbf_gram(x: torch.Tensor, sigma_fraction: float = 0.5) -> torch.Tensor:
    """RBF Gram matrix `(n, n)` of x `(n, d)`: exp(-||xi - xj||² / (2σ²)), σ = sigma_fraction × the median
    distance between distinct rows (Kornblith et al.'s choice, which makes the kernel scale-free)."""
    x = x.double()
    sq = torch.cdist(x, x).pow(2)
    off_diagonal = sq[~torch.eye(len(x), dtype=torch.bool)]
    median = off_diagonal.clamp_min(0).sqrt().median()
    if median == 0:
        raise ValueError("RBF CKA needs rows that differ: the median distance between rows is 0.")
    sigma = sigma_fraction * median
    return torch.exp(-sq / (2 * sigma ** 2))


def center_gram(k: torch.Tensor) -> torch.Tensor:
    """H K H for H = I - 11ᵀ/n, in O(n²): remove row and column means, add back the grand mean."""
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Biased HSIC tr(K H L H) / (n-1)² of two symmetric `(n, n)` Gram matrices; tr(K H L H) equals the
    elementwise product sum of the centred matrices, which avoids n³ matrix products."""
    n = len(k)
    return (center_gram(k) * center_gram(l)).sum() / (n - 1) ** 2


def kernel_cka(k: torch.Tensor, l: torch.Tensor) -> float:
    """CKA of two symmetric `(n, n)` Gram matrices."""
    kc, lc = center_gram(k), center_gram(l)
    return float((kc * lc).sum() / torch.sqrt((kc * kc).sum() * (lc * lc).sum()))


def rbf_cka(x: torch.Tensor, y: torch.Tensor, sigma_fraction: float = 0.5) -> float:
    """RBF-kernel CKA of x `(n, d1)` and y `(n, d2)` in [0, 1]; O(n²) memory."""
    _check_pair(x, y)
    return kernel_cka(rbf_gram(x, sigma_fraction), rbf_gram(y, sigma_fraction))


def cka(x: torch.Tensor, y: torch.Tensor, kernel: str = "linear", sigma_fraction: float = 0.5) -> float:
    if kernel == "linear":
        return linear_cka(x, y)
    if kernel == "rbf":
        return rbf_cka(x, y, sigma_fraction)
    raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}.")


def cka_matrix(states_a: Dict[int, torch.Tensor], states_b: Dict[int, torch.Tensor], kernel: str = "linear",
               sigma_fraction: float = 0.5) -> Sequence[Sequence[float]]:
    """CKA of every layer of a (rows) against every layer of b (columns): {layer: `(n, d)`} each, same n."""
    return [[cka(states_a[i], states_b[j], kernel, sigma_fraction) for j in sorted(states_b)]
            for i in sorted(states_a)]


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() != 2 or y.dim() != 2 or len(x) != len(y):
        raise ValueError(f"CKA compares the same n examples: expected (n, d1) and (n, d2), got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}.")
    if len(x) < 2:
        raise ValueError(f"CKA needs at least 2 examples, got {len(x)}.")
