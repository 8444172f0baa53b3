"""Per-language loss weights λ_k of criterion `xlmr_mlm`."""

import pytest
import torch

from fairseq_xlmr.criterions.xlmr_mlm import XlmrMlmCriterion, XlmrMlmCriterionConfig, parse_language_weights
from tests.fixtures.tiny_mlm_batch import masked_batch, tiny_model, tiny_task


def _grads(model, criterion, sample):
    model.zero_grad()
    loss, _, log = criterion(model, sample)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, loss, log


def test_parse_and_reject():
    assert parse_language_weights("", ["en", "de"]) is None
    assert parse_language_weights("de:2.5", ["en", "de"]) == [1.0, 2.5]
    with pytest.raises(ValueError, match="names language 'sw', which is not one of the task's languages"):
        parse_language_weights("sw:2", ["en", "de"])
    with pytest.raises(ValueError, match="`lang:weight` pairs"):
        parse_language_weights("en=2", ["en", "de"])
    with pytest.raises(ValueError, match="twice"):
        parse_language_weights("en:1,en:2", ["en", "de"])


def test_unknown_language_fails_when_the_criterion_is_built():
    with pytest.raises(ValueError, match="'xx'"):
        XlmrMlmCriterion(XlmrMlmCriterionConfig(language_loss_weights="xx:1"), tiny_task())


def test_weight_zero_removes_a_language_from_the_gradient_and_logs_stay_unweighted():
    task = tiny_task()
    model, _ = tiny_model(task)
    mixed = masked_batch(task, [0, 1, 0, 1])  # en, de, en, de
    en_only = masked_batch(task, [0, 1, 0, 1])
    en_only["target"][[1, 3]] = task.source_dictionary.pad()  # de samples predict nothing

    plain = XlmrMlmCriterion(XlmrMlmCriterionConfig(), task)
    weighted = XlmrMlmCriterion(XlmrMlmCriterionConfig(language_loss_weights="de:0"), task)
    g_weighted, loss_weighted, log_weighted = _grads(model, weighted, mixed)
    g_en, loss_en, _ = _grads(model, plain, en_only)
    assert torch.allclose(loss_weighted, loss_en, atol=1e-6)
    for name, grad in g_en.items():
        assert torch.allclose(g_weighted[name], grad, atol=1e-6), name

    _, loss_plain, log_plain = _grads(model, plain, mixed)
    assert loss_plain > loss_weighted + 1.0  # de's tokens count again
    # The per-language logs are the plain losses whichever weights are used.
    assert log_weighted["loss_de"] > 0 and torch.equal(log_weighted["loss_de"], log_plain["loss_de"])
    assert torch.equal(log_weighted["loss_en"], log_plain["loss_en"])

    doubled = XlmrMlmCriterion(XlmrMlmCriterionConfig(language_loss_weights="en:2,de:2"), task)
    _, loss_doubled, _ = _grads(model, doubled, mixed)
    assert torch.allclose(loss_doubled, 2 * loss_plain, rtol=1e-6)
