"""Gradient reversal: identity forward, gradient exactly −λ times the upstream one."""

import pytest
import torch

from fairseq_xlmr.modules.gradient_reversal import reverse_gradient


@pytest.mark.parametrize("lambd", [0.0, 0.5, 1.0, 3.0])
def test_forward_is_identity_and_gradient_is_minus_lambda(lambd):
    x = torch.tensor([[1.0, -2.0, 3.5], [0.25, 0.0, -1.0]], requires_grad=True)
    y = reverse_gradient(x, lambd)
    assert torch.equal(y, x)
    upstream = torch.tensor([[2.0, -1.0, 0.5], [4.0, 3.0, -8.0]])
    y.backward(upstream)
    assert torch.equal(x.grad, -lambd * upstream)


def test_only_the_encoder_side_is_reversed():
    # encoder (w) -> GRL -> classifier (v): v gets the plain gradient, w the negated one.
    w = torch.tensor(2.0, requires_grad=True)
    v = torch.tensor(3.0, requires_grad=True)
    (v * reverse_gradient(w * 5.0, 0.5)).backward()
    assert v.grad.item() == 10.0  # d(v·5w)/dv = 5w
    assert w.grad.item() == -0.5 * 15.0  # −λ · d(v·5w)/dw = −λ·5v


def test_adversarial_criterion_reverses_the_discriminator_gradient_into_the_encoder():
    from fairseq_xlmr.criterions.xlmr_adversarial_mlm import XlmrAdversarialMlmConfig, XlmrAdversarialMlmCriterion
    from fairseq_xlmr.criterions.xlmr_mlm import XlmrMlmCriterion, XlmrMlmCriterionConfig
    from tests.fixtures.tiny_mlm_batch import masked_batch, tiny_model, tiny_task

    task = tiny_task()
    model, _ = tiny_model(task)
    sample = masked_batch(task, [0, 1, 1, 0])

    def encoder_grads(criterion):
        model.zero_grad()
        criterion.zero_grad()
        criterion(model, sample)[0].backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    def adversarial(schedule):
        torch.manual_seed(3)  # the same discriminator every time
        return XlmrAdversarialMlmCriterion(
            XlmrAdversarialMlmConfig(adversarial_lambda=schedule, encoder_embed_dim=64), task)

    model.set_num_updates(10)  # as fairseq's train_step does before every forward
    assert model.num_updates == 10
    mlm = encoder_grads(XlmrMlmCriterion(XlmrMlmCriterionConfig(), task))
    scheduled = encoder_grads(adversarial("0:0,20:1"))  # λ(10) = 0.5
    half, full = encoder_grads(adversarial("0.5")), encoder_grads(adversarial("1"))
    zero = encoder_grads(adversarial("0"))
    name = "encoder.sentence_encoder.layers.0.fc1.weight"
    for key in mlm:
        assert torch.equal(zero[key], mlm[key]), key  # λ = 0: the discriminator does not reach the encoder
    assert torch.allclose(scheduled[name], half[name])  # the schedule's λ at update 10 is 0.5
    # The encoder gradient is linear in λ: mlm − λ · (discriminator gradient through the encoder).
    disc = mlm[name] - full[name]
    assert disc.abs().sum() > 0
    assert torch.allclose(half[name], mlm[name] - 0.5 * disc, atol=1e-6)
