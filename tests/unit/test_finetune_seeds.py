"""`xlmr finetune-seeds` argument handling (the runs themselves: tests/e2e/test_finetune_classification.py)."""

import argparse

import pytest

from fairseq_xlmr.commands import finetune_seeds
from fairseq_xlmr.experiments import seeds


def test_train_args_follow_the_double_dash():
    parser = argparse.ArgumentParser()
    finetune_seeds.add_arguments(parser)
    args = parser.parse_args(["--name", "xnli", "--seeds", "1", "2", "--save-dir", "runs", "--epochs", "5",
                              "--", "data", "--task", "xlmr_sentence_classification", "--lr", "2e-5"])
    assert args.seeds == [1, 2] and args.epochs == 5.0
    assert args.train_args == ["data", "--task", "xlmr_sentence_classification", "--lr", "2e-5"]


def test_seed_and_save_dir_belong_to_the_driver():
    with pytest.raises(ValueError, match="--seed=3 is set per run by finetune-seeds"):
        seeds.check_train_args(["data", "--seed=3"])
    with pytest.raises(ValueError, match="--save-dir is set per run"):
        seeds.check_train_args(["data", "--save-dir", "x"])
    seeds.check_train_args(["data", "--seeds-file", "x"])  # only the exact options


def test_option_value_takes_the_last_occurrence():
    argv = ["--finetune-from-model", "a.pt", "--lr", "1", "--finetune-from-model=b.pt"]
    assert seeds.option_value(argv, "--finetune-from-model") == "b.pt"
    assert seeds.option_value(argv, "--restore-file") is None


def test_the_evaluator_follows_the_training_task():
    from fairseq_xlmr.evaluation import eval_qa, finetune_eval

    assert seeds.evaluator(["data", "--task", "xlmr_span_qa"]) is eval_qa.evaluate_and_write
    assert seeds.evaluator(["data", "--task=xlmr_span_qa"]) is eval_qa.evaluate_and_write
    assert seeds.evaluator(["data", "--task", "xlmr_token_classification"]) is finetune_eval.evaluate_and_write
    assert seeds.evaluator(["data"]) is finetune_eval.evaluate_and_write


def test_the_transfer_recipe_freezes_all_but_the_top_four_layers_of_the_pretrained_model(tmp_path):
    import torch

    checkpoint = tmp_path / "model.pt"
    torch.save({"cfg": {"model": {"encoder_layers": 12, "encoder_embed_dim": 384}}, "model": {}}, checkpoint)
    assert seeds.recipe_args("transfer", checkpoint) == ["--freeze-layers", "8", "--lr", "1e-4"]
    assert seeds.recipe_args("xtreme", checkpoint) == []
    with pytest.raises(ValueError, match="needs|pass --finetune-from-model"):
        seeds.recipe_args("transfer", None)
    with pytest.raises(ValueError, match="known: xtreme, transfer"):
        seeds.recipe_args("frozen", checkpoint)
