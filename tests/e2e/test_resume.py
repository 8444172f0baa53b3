"""fairseq-train --user-dir fairseq_xlmr --arch xlmr_debug trains on CPU, stops, and resumes."""

import torch

from tests.fixtures.fairseq_run import USER_DIR, fairseq_train, json_stats, make_word_data_bin, tiny_model_args


def test_train_stop_and_resume_from_checkpoint_last(tmp_path):
    data = make_word_data_bin(str(tmp_path / "data"))
    save_dir = tmp_path / "checkpoints"
    common = [data, "--user-dir", USER_DIR, "--task", "masked_lm", "--criterion", "masked_lm", *tiny_model_args(),
              "--optimizer", "xlmr_fused_adam", "--save-dir", save_dir, "--save-interval-updates", "6"]

    first = fairseq_train(common + ["--max-update", "6"])
    assert any("xlmr_fused_adam: fused implementation on cpu" in m for m in first)
    losses = [float(s["loss"]) for s in json_stats(first, '"num_updates"') if "loss" in s]
    assert len(losses) == 6 and losses[0] > 5.0  # ~log2(65) bits at init
    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
    assert state["optimizer_history"][-1]["num_updates"] == 6

    # A second fairseq-train on the same save dir resumes: this crashed with "Unsupported
    # global: argparse.Namespace" under PyTorch >= 2.6 before the allow-list.
    second = fairseq_train(common + ["--max-update", "12"])
    assert any("Loaded checkpoint" in m and "@ 6 updates" in m for m in second)
    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
    assert state["optimizer_history"][-1]["num_updates"] == 12
    steps = [int(s["num_updates"]) for s in json_stats(second, '"num_updates"') if "loss" in s]
    assert steps == [7, 8, 9, 10, 11, 12]  # continued from update 6, not from scratch



def test_model_config_fields_are_command_line_flags(tmp_path):
    """RobertaModel's legacy add_args once hid our dataclass-only flags (--language-embeddings)."""
    import pytest

    data = make_word_data_bin(str(tmp_path / "data"))
    argv = [data, "--user-dir", USER_DIR, "--task", "masked_lm", "--criterion", "masked_lm", *tiny_model_args(),
            "--save-dir", tmp_path / "ck", "--max-update", "1", "--language-embeddings"]
    # The flag is parsed and reaches the model, which refuses it for a task without languages.
    with pytest.raises(ValueError, match="needs a task that names its languages"):
        fairseq_train(argv)
