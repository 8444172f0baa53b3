"""Aligning two models' sentence spaces with a linear map learned on parallel sentences (Conneau, Wu et al.,
2020, §5: monolingual BERTs become cross-lingually aligned after a linear/orthogonal map).

For each layer: mean-pooled states of the source sentences in model A and of their translations in
model B; a map A→B fitted on the first sentences; nearest-neighbour retrieval accuracy on the held-apart
rest, before the map (identity, only when both spaces have the same size) and after it.
"""

from typing import Dict, Optional, Sequence

import torch

from fairseq_xlmr.analysis.bli import least_squares_map, procrustes
from fairseq_xlmr.evaluation.retrieval import accuracy

MAPS = ("orthogonal", "linear")


def fit_map(x: torch.Tensor, y: torch.Tensor, kind: str = "orthogonal") -> torch.Tensor:
    """W `(d1, d2)` with x W ≈ y for paired rows x `(n, d1)`, y `(n, d2)`: orthogonal Procrustes or
    (ridge-regularised) least squares."""
    if kind == "orthogonal":
        return procrustes(x, y)
    if kind == "linear":
        return least_squares_map(x, y)
    raise ValueError(f"--map must be one of {', '.join(MAPS)}, got {kind!r}.")


def standardize(train: torch.Tensor, test: torch.Tensor):
    """Centre and unit-normalise both splits with the train split's mean (no test statistics leak in)."""
    mean = train.double().mean(0, keepdim=True)
    def unit(x):
        return torch.nn.functional.normalize(x.double() - mean, dim=1)
    return unit(train), unit(test)


def map_retrieval(xs: torch.Tensor, ys: torch.Tensor, train: int, kind: str = "orthogonal") -> Dict[str, Optional[float]]:
    """Retrieval accuracy (%) of rows train.. of xs `(n, d1)` among rows train.. of ys `(n, d2)`, both ways,
    before (identity; None when d1 ≠ d2) and after a map fitted on rows ..train."""
    if not 2 <= train <= len(xs) - 2:
        raise ValueError(f"--train-lines {train} leaves too few sentences: need >= 2 to fit and >= 2 to test "
                         f"among {len(xs)} pairs.")
    x_train, x_test = standardize(xs[:train], xs[train:])
    y_train, y_test = standardize(ys[:train], ys[train:])
    w = fit_map(x_train, y_train, kind)
    mapped = x_test @ w
    same = xs.shape[1] == ys.shape[1]
    return {
        "before": accuracy(x_test.float(), y_test.float()) if same else None,
        "before_reverse": accuracy(y_test.float(), x_test.float()) if same else None,
        "after": accuracy(mapped.float(), y_test.float()),
        "after_reverse": accuracy(y_test.float(), mapped.float()),
    }


def per_layer(states_a: Dict[int, torch.Tensor], states_b: Dict[int, torch.Tensor], train: int,
              kind: str = "orthogonal", layers: Optional[Sequence[int]] = None) -> Dict[str, list]:
    """{"layers", "before", "after", "before_reverse", "after_reverse"}: one value per layer pair (same index)."""
    layers = sorted(set(states_a) & set(states_b)) if layers is None else list(layers)
    out = {"layers": layers, "before": [], "after": [], "before_reverse": [], "after_reverse": []}
    for layer in layers:
        result = map_retrieval(states_a[layer], states_b[layer], train, kind)
        for key, value in result.items():
            out[key].append(value)
    return out
