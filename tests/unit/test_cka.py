"""CKA on matrices whose answer is known: identical, rotated, scaled, hand-computed, independent."""

import pytest
import torch

from fairseq_xlmr.analysis.cka import cka_matrix, hsic, kernel_cka, linear_cka, rbf_cka


def random_orthogonal(dim: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


@pytest.fixture
def x():
    return torch.randn(50, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("cka", [linear_cka, rbf_cka])
def test_identical_representations_have_cka_one(cka, x):
    assert cka(x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("cka", [linear_cka, rbf_cka])
def test_invariant_to_orthogonal_transforms_isotropic_scaling_and_translation(cka, x):
    y = torch.randn(50, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + x
    reference = cka(x, y)
    assert 0.3 < reference < 0.99  # related, not identical: the invariance below is not a trivial 1 == 1
    transformed = 3.7 * y @ random_orthogonal(8, 2) + 5.0
    assert cka(x, transformed) == pytest.approx(reference, abs=1e-10)


def test_linear_cka_is_not_invariant_to_anisotropic_scaling(x):
    y = x @ torch.diag(torch.tensor([10.0, 1, 1, 1, 1, 1, 1, 0.1], dtype=torch.float64))
    assert linear_cka(x, y) < 0.9


def test_linear_cka_hand_computed():
    # x centred = [[-1,0],[0,0],[1,0]] -> xᵀx = diag(2, 0); y centred = [[-1],[1],[0]]:
    # yᵀx = [1, 0], ||yᵀx||² = 1, ||xᵀx|| = 2, ||yᵀy|| = 2 -> CKA = 1/4.
    x = torch.tensor([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0]])
    y = torch.tensor([[0.0], [2.0], [1.0]])
    assert linear_cka(x, y) == pytest.approx(0.25, abs=1e-12)


def test_linear_cka_of_independent_noise_is_small():
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(2000, 4, generator=gen), torch.randn(2000, 4, generator=gen)
    assert linear_cka(a, b) < 0.01


def test_layer_matrix_and_errors(x):
    states = {0: x, 1: x @ random_orthogonal(8, 4), 2: torch.randn(50, 3, dtype=torch.float64)}
    matrix = cka_matrix(states, {0: x, 1: x[:, :4]})
    assert len(matrix) == 3 and len(matrix[0]) == 2
    assert matrix[0][0] == pytest.approx(1.0) and matrix[1][0] == pytest.approx(1.0)
    assert matrix[2][0] < 0.5
    with pytest.raises(ValueError, match=r"same n examples.*\(50, 8\) and \(49, 8\)"):
        linear_cka(x, x[:49])
    with pytest.raises(ValueError, match="constant representation"):
        linear_cka(torch.ones(5, 2), x[:5])


def test_kernel_cka_with_linear_grams_equals_linear_cka_and_hsic_matches_the_trace_formula(x):
    y = torch.randn(50, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64) + x[:, :5]
    k, l = x @ x.T, y @ y.T
    assert kernel_cka(k, l) == pytest.approx(linear_cka(x, y), abs=1e-12)
    h = torch.eye(50, dtype=torch.float64) - 1.0 / 50
    assert float(hsic(k, l)) == pytest.approx(float(torch.trace(k @ h @ l @ h)) / 49 ** 2, rel=1e-10)
