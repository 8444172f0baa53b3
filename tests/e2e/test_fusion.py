"""Model fusion through the real entry points: `xlmr average` on a run's checkpoints, then
`fairseq-train` with criteria `xlmr_distillation` and `xlmr_adversarial_mlm` (in-process, tiny data)."""

import pytest
import torch

from fairseq_xlmr import checkpoint, cli
from fairseq_xlmr.checkpoint import load_dictionary, load_model
from fairseq_xlmr.fusion.average import last_k_checkpoints
from tests.fixtures.fairseq_run import USER_DIR, fairseq_train, json_stats, tiny_model_args
from tests.fixtures.tiny_bin import make_tiny_data_bin

pytestmark = pytest.mark.slow

MLM = ["--user-dir", USER_DIR, "--task", "xlmr_mlm", *tiny_model_args(), "--required-batch-size-multiple", "1"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A tiny 2-language data-bin and a 30-update xlmr_mlm run that keeps its last 3 interval checkpoints."""
    root = tmp_path_factory.mktemp("fusion")
    data = root / "data-bin"
    make_tiny_data_bin(data, ["en", "sw"], {"en": 200, "sw": 60})
    save_dir = root / "teacher"
    fairseq_train([data, *MLM, "--criterion", "xlmr_mlm", "--max-update", "30", "--save-dir", save_dir,
                   "--save-interval-updates", "10", "--keep-interval-updates", "3"])
    return data, save_dir


def _floats(stats, key):
    return [float(s[key]) for s in stats if key in s]


def test_average_last_k_is_a_normal_checkpoint(teacher_run, tmp_path):
    data, save_dir = teacher_run
    out = tmp_path / "avg" / "model.pt"
    cli.main(["average", "--last-k", "2", "--save-dir", str(save_dir), "--out", str(out)])
    newest = last_k_checkpoints(save_dir, 2)
    assert [p.name.split("_")[-1] for p in newest] == ["20.pt", "30.pt"]
    a, b = (checkpoint.load(p)["model"] for p in newest)
    averaged = load_model(out, load_dictionary(str(out.parent / "dict.txt"))).state_dict()
    key = "encoder.sentence_encoder.layers.0.fc1.weight"
    assert not torch.equal(a[key], b[key])
    assert torch.allclose(averaged[key], (a[key] + b[key]) / 2, atol=1e-7)
    assert (out.parent / "dict.txt").read_text() == (data / "dict.txt").read_text()  # found through task.data
    messages = fairseq_train([data, *MLM, "--criterion", "xlmr_mlm", "--max-update", "2", "--save-dir",
                              tmp_path / "ft", "--finetune-from-model", out])
    assert any(m.startswith(f"loading pretrained model from {out}") for m in messages)
    assert len(_floats(json_stats(messages, '"loss"'), "loss")) == 2


def test_distillation_kl_falls(teacher_run, tmp_path):
    data, save_dir = teacher_run
    messages = fairseq_train([data, *MLM, "--criterion", "xlmr_distillation", "--max-update", "30",
                              "--teachers", save_dir / "checkpoint_last.pt", "--temperature", "2",
                              "--hidden-loss-weight", "0.1", "--save-dir", tmp_path / "student"])
    kd = _floats(json_stats(messages, '"kd_loss"'), "kd_loss")
    assert len(kd) == 30 and sum(kd[-5:]) / 5 < 0.7 * sum(kd[:5]) / 5, kd
    assert _floats(json_stats(messages, '"hidden_mse"'), "hidden_mse")
    state = checkpoint.load(tmp_path / "student" / "checkpoint_last.pt")
    assert set(state["criterion"]) == {"projection.weight", "projection.bias"}  # trained with the student
    assert not any(k.startswith("teachers") for k in state["model"])


def test_adversarial_discriminator_is_trained_and_logged(teacher_run, tmp_path):
    data, save_dir = teacher_run
    # Started from a plain MLM checkpoint, whose `criterion` entry is None: the discriminator starts fresh.
    messages = fairseq_train([data, *MLM, "--criterion", "xlmr_adversarial_mlm", "--max-update", "20",
                              "--adversarial-lambda", "0:0,10:1", "--save-dir", tmp_path / "adv",
                              "--finetune-from-model", save_dir / "checkpoint_last.pt"])
    assert any("has no parameters for criterion XlmrAdversarialMlmCriterion" in m for m in messages)
    stats = json_stats(messages, '"adv_loss"')
    assert len(stats) == 20 and {"adv_acc", "adv_lambda", "loss_en", "loss_sw"} <= set(stats[0])
    lambdas = _floats(stats, "adv_lambda")
    assert lambdas[0] == 0.0 and lambdas[5] == 0.5 and lambdas[-1] == 1.0  # the schedule, by update
    assert all(0.0 <= a <= 1.0 for a in _floats(stats, "adv_acc"))
    state = checkpoint.load(tmp_path / "adv" / "checkpoint_last.pt")
    assert state["criterion"]["discriminator.2.weight"].shape == (2, 64)  # 2 languages, 64-dim states
