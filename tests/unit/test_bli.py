"""Procrustes, CSLS, precision@k and refinement on cases with known answers."""

import pytest
import torch

from fairseq_xlmr.analysis.align import map_retrieval
from fairseq_xlmr.analysis.bli import (csls_scores, evaluate_maps, least_squares_map, mutual_nn_pairs, normalize_embeddings,
                                       precision_at_k, procrustes, refine, scores)


def random_orthogonal(dim: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_procrustes_recovers_a_planted_rotation_exactly():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rotation = random_orthogonal(16, 1)
    w = procrustes(x, x @ rotation)
    assert torch.allclose(w, rotation, atol=1e-5)
    assert torch.allclose(w.T @ w, torch.eye(16, dtype=torch.float64), atol=1e-10)


def test_procrustes_between_spaces_of_different_size_is_semi_orthogonal():
    x = torch.randn(100, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    embed = random_orthogonal(9, 3)[:6]  # (6, 9) with orthonormal rows: x lives in a 6-d subspace of 9-d
    w = procrustes(x, x @ embed)
    assert w.shape == (6, 9) and torch.allclose(w, embed, atol=1e-5)


def test_least_squares_recovers_a_planted_linear_map():
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    planted = torch.randn(5, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.allclose(least_squares_map(x, x @ planted, ridge=0.0), planted, atol=1e-8)


def test_csls_matches_a_hand_computed_3x3_case():
    # Unit vectors at angles 0°, 90°, 180° (sources) and 0°, 45°, 90° (targets), k = 2.
    s = 2 ** -0.5
    src = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    tgt = torch.tensor([[1.0, 0.0], [s, s], [0.0, 1.0]], dtype=torch.float64)
    # cos = [[1, s, 0], [0, s, 1], [-1, -s, 0]]
    # r_T (mean of each source's 2 best targets): [(1+s)/2, (1+s)/2, (0-s)/2]
    # r_S (mean of each target's 2 best sources): t0 [1, 0] -> 1/2; t1 [s, s] -> s; t2 [1, 0] -> 1/2
    r_t = [(1 + s) / 2, (1 + s) / 2, -s / 2]
    r_s = [0.5, s, 0.5]
    cos = [[1, s, 0], [0, s, 1], [-1, -s, 0]]
    expected = torch.tensor([[2 * cos[i][j] - r_t[i] - r_s[j] for j in range(3)] for i in range(3)],
                            dtype=torch.float64)
    assert torch.allclose(csls_scores(src, tgt, k=2), expected, atol=1e-12)
    assert csls_scores(src, tgt, k=2)[0].tolist() == pytest.approx([0.6464466, -0.1464466, -1.3535534], abs=1e-6)


def test_csls_demotes_a_hub_that_nearest_neighbour_picks():
    # Target 0 sits between everything: plain cosine retrieves it for both queries, CSLS does not.
    src = torch.nn.functional.normalize(torch.tensor([[1.0, 0.6], [0.6, 1.0]], dtype=torch.float64), dim=1)
    tgt = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64), dim=1)
    gold = [[1], [2]]
    assert precision_at_k(scores(src, tgt, "nn"), gold, ks=(1,))[1] == 0.0
    assert precision_at_k(scores(src, tgt, "csls", k=2), gold, ks=(1,))[1] == 100.0


def test_precision_at_k_on_a_toy_case():
    score = torch.tensor([[0.9, 0.8, 0.1, 0.0],   # best 0, then 1
                          [0.1, 0.2, 0.3, 0.4],   # best 3, 2, 1, 0
                          [0.5, 0.4, 0.6, 0.0]])  # best 2, 0, 1
    gold = [[0], [1], [3, 1]]  # any gold translation counts
    assert precision_at_k(score, gold, ks=(1, 2, 3)) == pytest.approx({1: 100 / 3, 2: 100 / 3, 3: 100.0})


def test_refinement_recovers_a_rotation_from_a_noisy_start():
    gen = torch.Generator().manual_seed(6)
    src = normalize_embeddings(torch.randn(300, 10, generator=gen, dtype=torch.float64))
    rotation = random_orthogonal(10, 7)
    tgt = src @ rotation
    noise = 0.3 * torch.randn(12, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    start = procrustes(src[:12], tgt[:12] + noise)  # 12 noisy pairs: a rough map
    gold = [[i] for i in range(300)]
    assert precision_at_k(csls_scores(torch.nn.functional.normalize(src @ start, dim=1), tgt), gold, (1,))[1] < 50
    w, sizes = refine(src, tgt, start, iterations=5, k=10)
    assert torch.allclose(w, rotation, atol=1e-5)
    assert sizes[0] < 300 and sizes[-1] == 300  # in the end every word is its translation's mutual NN
    assert precision_at_k(csls_scores(src @ w, tgt), gold, (1,))[1] == 100.0


def test_mutual_nearest_neighbours_keep_only_pairs_that_choose_each_other():
    src = torch.eye(3, dtype=torch.float64)[[2, 0, 1]]  # source i is target perm[i]
    tgt = torch.eye(3, dtype=torch.float64)
    assert mutual_nn_pairs(src, tgt, k=1) == [(0, 2), (1, 0), (2, 1)]
    # Two sources closest to target 0: only the closer one keeps it, the other finds no partner.
    src = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.3]], dtype=torch.float64), dim=1)
    tgt = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert mutual_nn_pairs(src, tgt, k=1) == [(0, 0)]
    assert mutual_nn_pairs(src, tgt, k=1, max_rank=1) == [(0, 0)]


def test_map_retrieval_undoes_a_rotation_between_two_spaces():
    gen = torch.Generator().manual_seed(8)
    xs = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    ys = xs @ random_orthogonal(6, 9) + 0.01 * torch.randn(40, 6, generator=gen, dtype=torch.float64)
    result = map_retrieval(xs.float(), ys.float(), train=20)
    assert result["after"] == 100.0 and result["after_reverse"] == 100.0
    assert result["before"] < 50.0
    with pytest.raises(ValueError, match="--train-lines 39 leaves too few"):
        map_retrieval(xs, ys, train=39)


def test_evaluate_maps_runs_the_muse_protocol_on_a_rotated_space():
    gen = torch.Generator().manual_seed(10)
    src = normalize_embeddings(torch.randn(200, 8, generator=gen, dtype=torch.float64))
    tgt = src @ random_orthogonal(8, 11)
    train = [(i, i) for i in range(150)]
    gold = {i: [i] for i in range(150, 200)}  # held-out words, searched among all 200 targets
    results, sizes = evaluate_maps(src, tgt, train, gold, refine_iters=2, k=10)
    assert results["identity"]["nn"][1] < 20.0
    for mapping in ("procrustes", "refined"):
        assert results[mapping]["nn"] == {1: 100.0, 5: 100.0, 10: 100.0}
        assert results[mapping]["csls"][1] == 100.0
    assert sizes == [200, 200]
    smaller, _ = evaluate_maps(src, tgt[:, :6] @ random_orthogonal(6, 12), train, gold, refine_iters=0)
    assert smaller["identity"] is None and "refined" not in smaller  # no identity between 8-d and 6-d
