"""Criterion `xlmr_distillation`: exact KL values, frozen teachers, per-language routing, projection."""

import math

import pytest
import torch

from fairseq_xlmr.criterions.xlmr_distillation import (
    XlmrDistillationConfig, XlmrDistillationCriterion, kd_loss, parse_teachers,
)
from tests.fixtures.tiny_mlm_batch import masked_batch, save_model, tiny_model, tiny_task


def _criterion(task, teachers, **options):
    return XlmrDistillationCriterion(XlmrDistillationConfig(teachers=str(teachers), encoder_embed_dim=64, **options),
                                     task)


def test_hand_computed_kl_on_two_tokens():
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0], [1.0, 0.0]])  # token 1: p_t = (3/4, 1/4); token 2: equal
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # token 2 adds 0
    assert kd_loss(student, teacher, 1.0).item() == pytest.approx(expected, abs=1e-6)
    # T = 2 softens both and multiplies by T²: teacher (√3/(√3+1), 1/(√3+1)) vs uniform.
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    softened = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    s2 = torch.tensor([[0.0, 0.0]])
    assert kd_loss(s2, teacher[:1], 2.0).item() == pytest.approx(4 * softened, abs=1e-6)


def test_student_identical_to_the_teacher_has_zero_kl(tmp_path):
    task = tiny_task()
    student, args = tiny_model(task)
    criterion = _criterion(task, save_model(student, args, tmp_path / "teacher.pt"), mlm_loss_weight=0.0)
    loss, sample_size, log = criterion(student, masked_batch(task, [0, 1, 1, 0]))
    assert sample_size == 4 * 3
    assert abs(log["kd_loss"].item()) < 1e-6 and abs(loss.item()) < 1e-6
    assert log["loss_en"] > 0  # the hard-label loss is still logged per language


def test_teachers_are_frozen_and_not_part_of_the_criterion(tmp_path):
    task = tiny_task()
    student, args = tiny_model(task)
    teacher_model, teacher_args = tiny_model(task, seed=1)
    criterion = _criterion(task, save_model(teacher_model, teacher_args, tmp_path / "t.pt"), hidden_loss_weight=1.0)
    teacher = criterion.teachers[0]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    # Only the projection is optimised and saved with the student.
    assert set(criterion.state_dict()) == {"projection.weight", "projection.bias"}
    assert criterion.projection.weight.shape == (64, 64)
    criterion.train()
    loss, _, log = criterion(student, masked_batch(task, [0, 1]))
    loss.backward()
    assert log["kd_loss"] > 0 and log["hidden_mse"] > 0
    assert criterion.projection.weight.grad.abs().sum() > 0
    assert student.encoder.sentence_encoder.embed_tokens.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training


def test_each_language_goes_to_its_own_teacher(tmp_path):
    task = tiny_task()
    student, args = tiny_model(task)
    other, other_args = tiny_model(task, seed=7)
    en_teacher = save_model(student, args, tmp_path / "en.pt")  # identical to the student
    de_teacher = save_model(other, other_args, tmp_path / "de.pt")
    routed = _criterion(task, f"en:{en_teacher},de:{de_teacher}")
    only_de = _criterion(task, de_teacher)
    assert len(routed.teachers) == 2
    assert abs(routed(student, masked_batch(task, [0, 0]))[2]["kd_loss"].item()) < 1e-6
    mixed = masked_batch(task, [0, 1, 0, 1])
    de_rows = masked_batch(task, [0, 1, 0, 1])
    de_rows["target"][[0, 2]] = task.source_dictionary.pad()  # only the de samples predict
    # The routed de teacher scores a batch of the two de rows, the single teacher all four: float32 kernels
    # blocked for another batch size agree to ~1e-5 relative (1.4e-5 on some CPUs), not exactly.
    assert routed(student, mixed)[2]["kd_loss"].item() == pytest.approx(
        only_de(student, de_rows)[2]["kd_loss"].item(), rel=1e-4)


def test_bad_settings_are_refused(tmp_path):
    task = tiny_task(vocab=20)
    with pytest.raises(ValueError, match="no teacher for de"):
        parse_teachers("en:/a", ["en", "de"])
    assert parse_teachers("en:/a,/b", ["en", "de"]) == [("en", "/a"), (None, "/b")]
    with pytest.raises(ValueError, match="neither a model dir"):
        _criterion(task, tmp_path / "missing")
    with pytest.raises(ValueError, match="temperature"):
        _criterion(task, tmp_path / "missing", temperature=0.0)
    bigger = tiny_task(vocab=30)
    model, args = tiny_model(bigger)
    with pytest.raises(ValueError, match="embedding rows but the dictionary has"):
        _criterion(task, save_model(model, args, tmp_path / "big.pt"))
