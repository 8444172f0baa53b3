"""Bilingual lexicon induction, MUSE-style (Conneau et al., 2018, "Word Translation Without Parallel Data"),
as used by Conneau, Wu et al. (2020) to measure word-level alignment of pretrained models.

Pure functions on embedding matrices: orthogonal Procrustes from a seed dictionary, refinement by
mutual nearest neighbours under CSLS, and precision@k of nearest-neighbour or CSLS retrieval.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch

SCORINGS = ("nn", "csls")


def normalize_embeddings(x: torch.Tensor) -> torch.Tensor:
    """`(n, d)` -> `(n, d)`: unit length, mean-centred, unit length again (MUSE's `renorm,center,renorm`).
    Centring removes the common direction that makes every pair of rows of a small model look similar."""
    x = torch.nn.functional.normalize(x.double(), dim=1)
    x = x - x.mean(0, keepdim=True)
    return torch.nn.functional.normalize(x, dim=1)


def procrustes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Orthogonal W `(d1, d2)` minimising ||x W - y||_F for paired rows x `(n, d1)`, y `(n, d2)`.

    W = U Vᵀ for the SVD xᵀy = U S Vᵀ (Schönemann, 1966). For d1 ≠ d2 the thin SVD gives a
    semi-orthogonal W (orthonormal columns or rows), the nearest thing to a rotation between spaces.
    """
    if len(x) != len(y):
        raise ValueError(f"Procrustes needs paired rows: got {len(x)} and {len(y)}.")
    u, _, vt = torch.linalg.svd(x.double().T @ y.double(), full_matrices=False)
    return u @ vt


def least_squares_map(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Unconstrained linear W `(d1, d2)` minimising ||x W - y||² + ridge·||W||², for paired rows."""
    x, y = x.double(), y.double()
    gram = x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype)
    return torch.linalg.solve(gram, x.T @ y)


def mean_topk_similarity(queries: torch.Tensor, keys: torch.Tensor, k: int) -> torch.Tensor:
    """r(q) = mean cosine of each query `(n, d)` with its k nearest keys `(m, d)` (unit rows) -> `(n,)`."""
    return (queries @ keys.T).topk(min(k, len(keys)), dim=1).values.mean(1)


def csls_scores(mapped_src: torch.Tensor, tgt: torch.Tensor, k: int = 10,
                src_pool: torch.Tensor = None) -> torch.Tensor:
    """CSLS(x, y) = 2 cos(x, y) - r_T(x) - r_S(y) for unit rows: `(n, d)`, `(m, d)` -> `(n, m)`.

    r_T(x) is x's mean cosine with its k nearest targets and r_S(y) is y's mean cosine with its k
    nearest mapped source words, taken in `src_pool` (default: the queries themselves); subtracting both
    penalises hubs, the points that are near everything.
    """
    src_pool = mapped_src if src_pool is None else src_pool
    r_t = mean_topk_similarity(mapped_src, tgt, k)
    r_s = mean_topk_similarity(tgt, src_pool, k)
    return 2 * mapped_src @ tgt.T - r_t[:, None] - r_s[None, :]


def scores(mapped_src: torch.Tensor, tgt: torch.Tensor, scoring: str, k: int = 10,
           src_pool: torch.Tensor = None) -> torch.Tensor:
    """`(n, m)` scores of unit-length queries against unit-length targets: cosine (nn) or CSLS."""
    if scoring == "nn":
        return mapped_src @ tgt.T
    if scoring == "csls":
        return csls_scores(mapped_src, tgt, k, src_pool)
    raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}.")


def precision_at_k(score: torch.Tensor, gold: Sequence[Sequence[int]], ks: Sequence[int] = (1, 5, 10)) -> Dict[int, float]:
    """Percent of queries with a gold target among their k best: score `(n, m)`, gold[i] = target indices
    of query i (any of them counts, as MUSE) -> {k: precision}."""
    top = score.topk(min(max(ks), score.shape[1]), dim=1).indices.tolist()
    return {k: 100.0 * sum(bool(set(row[:k]) & set(g)) for row, g in zip(top, gold)) / len(gold) for k in ks}


def mutual_nn_pairs(mapped_src: torch.Tensor, tgt: torch.Tensor, k: int = 10,
                    max_rank: int = 0) -> List[Tuple[int, int]]:
    """Pairs (i, j) where target j is source i's best CSLS match and i is j's, among the `max_rank`
    first rows of each side (0: all; MUSE uses the 15k most frequent words). Unit-length rows."""
    if max_rank:
        mapped_src, tgt = mapped_src[:max_rank], tgt[:max_rank]
    score = csls_scores(mapped_src, tgt, k)
    forward = score.argmax(1)
    backward = score.argmax(0)
    return [(i, int(j)) for i, j in enumerate(forward.tolist()) if int(backward[j]) == i]


def refine(src: torch.Tensor, tgt: torch.Tensor, w: torch.Tensor, iterations: int, k: int = 10,
           max_rank: int = 0) -> Tuple[torch.Tensor, List[int]]:
    """MUSE refinement: repeat (induce a dictionary of mutual CSLS nearest neighbours under the current
    map, refit Procrustes on it). src `(n, d1)`, tgt `(m, d2)` unit rows, w `(d1, d2)` -> (new w,
    induced dictionary size per iteration)."""
    sizes = []
    for _ in range(iterations):
        mapped = torch.nn.functional.normalize(src @ w, dim=1)
        pairs = mutual_nn_pairs(mapped, tgt, k, max_rank)
        sizes.append(len(pairs))
        if len(pairs) < 2:
            break  # nothing left to fit; keep the last map
        i, j = zip(*pairs)
        w = procrustes(src[list(i)], tgt[list(j)])
    return w, sizes


def evaluate_maps(src: torch.Tensor, tgt: torch.Tensor, train_pairs: Sequence[Tuple[int, int]],
                  gold: Dict[int, List[int]], refine_iters: int = 5, k: int = 10,
                  ks: Sequence[int] = (1, 5, 10)) -> Tuple[Dict[str, Optional[Dict[str, Dict[int, float]]]], List[int]]:
    """The MUSE protocol on normalised pools src `(n, d1)`, tgt `(m, d2)`: Procrustes fitted on
    `train_pairs` (source row, target row), then refined `refine_iters` times; each map scored on the
    queries of `gold` (source row -> target rows) against the whole target pool, with NN and CSLS-k.

    Returns ({"identity" (None when d1 ≠ d2), "procrustes", ["refined"]: {scoring: {k: P@k}}},
    refinement dictionary sizes).
    """
    queries = sorted(gold)
    answers = [gold[q] for q in queries]

    def evaluate(w: Optional[torch.Tensor]) -> Dict[str, Dict[int, float]]:
        mapped = src if w is None else torch.nn.functional.normalize(src @ w, dim=1)
        return {scoring: precision_at_k(scores(mapped[queries], tgt, scoring, k, mapped), answers, ks)
                for scoring in SCORINGS}

    i, j = zip(*train_pairs)
    w = procrustes(src[list(i)], tgt[list(j)])
    results = {"identity": evaluate(None) if src.shape[1] == tgt.shape[1] else None, "procrustes": evaluate(w)}
    sizes: List[int] = []
    if refine_iters:
        w_refined, sizes = refine(src, tgt, w, refine_iters, k)
        results["refined"] = evaluate(w_refined)
    return results, sizes
